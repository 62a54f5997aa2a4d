"""SageMaker Debugger: a debughookconfig.json as SageMaker writes it → tensors read back with TRAIN and EVAL modes."""

import json

from smdebug import modes
from smdebug.trials import create_trial


def debughook_config(tensors_dir) -> dict:
    """The shape SageMaker writes for DebuggerHookConfig + the overfit/vanishing-gradient/poor-init rules."""
    return {
        "LocalPath": str(tensors_dir),
        "S3OutputPath": "s3://bucket/job/debug-output",
        "HookParameters": {"save_interval": "1"},
        "CollectionConfigurations": [
            {"CollectionName": "losses", "CollectionParameters": {"save_interval": "1"}},
            {"CollectionName": "gradients", "CollectionParameters": {"save_interval": "2"}},
            {"CollectionName": "relu_input", "CollectionParameters": {"include_regex": ".*relu_input"}},
        ],
    }


def test_hook_saves_train_and_eval_losses_gradients_and_relu_inputs(sm_tree, run_train):
    base = sm_tree({"epochs": "2", "fine_tune": "head", "augment": "true", "profile": "true"}, per_class=8)
    tensors = base / "output" / "tensors"
    (base / "input" / "config" / "debughookconfig.json").write_text(json.dumps(debughook_config(tensors)))
    result = run_train(base)
    assert result.returncode == 0, result.stdout + result.stderr

    trial = create_trial(str(tensors))
    losses = trial.tensor_names(collection="losses")
    assert losses
    loss = trial.tensor(losses[0])
    assert loss.steps(mode=modes.TRAIN) and loss.steps(mode=modes.EVAL)
    assert all(loss.value(s, mode=modes.EVAL) > 0 for s in loss.steps(mode=modes.EVAL))
    assert any(name.startswith("gradient/") for name in trial.tensor_names(collection="gradients"))
    assert any("relu_input" in name for name in trial.tensor_names(collection="relu_input"))

    profile = base / "output" / "data" / "profile"
    assert (profile / "trace.json").stat().st_size > 0 and "Self CPU" in (profile / "op_summary.txt").read_text()


def test_no_config_means_no_hook_and_no_profile(sm_tree, run_train):
    base = sm_tree({"epochs": "1", "fine_tune": "head", "augment": "false"}, per_class=4)
    earlier = base / "output" / "data" / "profile"  # an earlier run's trace (profile=true) in the same tree
    earlier.mkdir(parents=True)
    (earlier / "trace.json").write_text("{}")
    result = run_train(base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smdebug" not in result.stdout and not (base / "output" / "tensors").exists()
    assert not earlier.exists()  # the reports hold this job's figures only
