"""orchestrate.py's contract with the training job, and the one seam to where a run goes: in-process, no AWS."""

import json

import boto3
import pytest
from moto_server import aws_environment
from sagemaker.local import LocalSession
from sagemaker.tuner import CategoricalParameter

from dogbreed.contract.hyperparams import Hyperparameters
from orchestration import backend, dataset, jobs, sdk
from orchestration.cli import main
from orchestration.config import parse_settings
from orchestration.errors import UsageError

ACCOUNT_ARGS = [
    "--image-uri", "123456789012.dkr.ecr.us-east-1.amazonaws.com/dog-breed-classifier:1.0",
    "--role-arn", "arn:aws:iam::123456789012:role/dogbreed-sagemaker",
    "--data-s3", "s3://dogbreed-data/dogImages", "--output-s3", "s3://dogbreed-output/runs", "--region", "us-east-1",
]  # fmt: skip


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, no instance metadata, and an endpoint no one listens on: nothing can reach AWS."""
    for key, value in aws_environment("http://127.0.0.1:9").items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every boto3 session orchestrate.py would create (the first thing any AWS call needs), recorded, not made."""
    created: list[dict] = []

    def refuse(**kwargs: object) -> None:
        created.append(kwargs)
        raise AssertionError("an AWS session was created")

    monkeypatch.setattr(boto3, "Session", refuse)
    return created


@pytest.mark.parametrize("mode", [[], ["--dry-run"]])
def test_a_typo_in_hp_is_refused_with_the_suggestion_before_any_aws_session(no_aws, capsys, mode: list[str]):
    code = main(["train", *ACCOUNT_ARGS, *mode, "--hp", "epochs=3", "--hp", "batchsize=64"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        "orchestrate.py: error: --hyperparameters: unknown hyperparameter batchsize='64': did you mean batch_size? "
    ), err
    assert len(err.splitlines()) == 1
    assert no_aws == []


def test_a_typo_in_hp_is_refused_in_local_mode(no_aws, capsys, tmp_path):
    code = main(["all", "--local", "--data-s3", str(tmp_path), "--workdir", str(tmp_path / "w"), "--hp", "epoch=2"])
    assert code == 2
    assert "unknown hyperparameter epoch='2': did you mean epochs?" in capsys.readouterr().err
    assert no_aws == []
    assert not (tmp_path / "w").exists()


def test_an_invalid_hp_value_names_what_is_allowed(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[hyperparameters]\noptimizer = "adagrad"\n')
    with pytest.raises(UsageError, match=r"^--hyperparameters: hyperparameter optimizer='adagrad' is invalid: "):
        parse_settings(["train", *ACCOUNT_ARGS, "--config", str(config)])


def test_known_hyperparameters_and_platform_keys_pass():
    settings = parse_settings(["train", *ACCOUNT_ARGS, "--hp", "lr=0.01", "--hp", "sagemaker_program=x"])
    assert settings.hyperparameters == {"lr": "0.01", "sagemaker_program": "x"}


def test_a_best_hyperparameters_file_with_a_typo_is_refused_before_any_request(capsys, tmp_path):
    """The file is read by the train step (with a session, before its first request: none could reach AWS)."""
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"hyperparameters": {"lr": "0.01", "batch_sise": "64"}}))
    code = main(["train", *ACCOUNT_ARGS, "--hyperparameters-file", str(best), "--workdir", str(tmp_path / "w")])
    assert code == 1
    assert capsys.readouterr().err.startswith(
        f"orchestrate.py: error: --hyperparameters-file: {best}: unknown hyperparameter batch_sise='64': "
        "did you mean batch_size? "
    )
    assert not (tmp_path / "w" / "state.json").exists()


def test_every_tuned_range_and_the_trial_recipe_are_hyperparameters_the_job_accepts():
    for name, tuned in jobs.HYPERPARAMETER_RANGES.items():
        values = tuned.values if isinstance(tuned, CategoricalParameter) else [tuned.min_value, tuned.max_value]
        for value in values:
            assert getattr(Hyperparameters.from_strings({name: str(value)}), name) == pytest.approx(float(value))
    recipe = Hyperparameters.from_strings(jobs.CACHED_FEATURE_RECIPE)
    assert (recipe.augment, recipe.fine_tune, recipe.cache_features) == (False, "head", True)


def test_local_training_reads_its_hook_config_from_a_channel_the_job_is_given(tmp_path):
    data = tmp_path / "data"
    for split in ("train", "test"):  # no valid/: the job holds one out
        (data / split).mkdir(parents=True)
    settings = parse_settings(["train", "--local", "--data-s3", str(data), "--workdir", str(tmp_path / "w")])
    aws = boto3.Session(region_name="us-east-1", **sdk.LOCAL_CREDENTIALS)
    session = LocalSession(boto_session=aws, sagemaker_config=sdk.SDK_CONFIG)
    inputs = jobs.local_channels(settings, dataset.channels(settings.data_s3, session), "job-1")
    assert list(inputs) == ["train", "test", jobs.LOCAL_HOOK_CHANNEL]
    assert inputs["train"] == f"file://{data}/train"
    assert (tmp_path / "w" / "job-1" / "debughookconfig.json").is_file()
    estimator = jobs.local_training_estimator(settings, session, "job-1", {})
    assert estimator.environment == {
        "SMDEBUG_CONFIG_FILE_PATH": f"/opt/ml/input/data/{jobs.LOCAL_HOOK_CHANNEL}/debughookconfig.json"
    }
    assert jobs.hook_config(settings)["LocalPath"] == "/opt/ml/output/tensors"


@pytest.mark.parametrize(("argv", "kind"), [(["--dry-run"], backend.DryRun), ([], backend.SageMaker)])
def test_dry_run_and_sagemaker_get_their_backend(argv: list[str], kind: type):
    with backend.backend_for(parse_settings(["all", *ACCOUNT_ARGS, *argv])) as chosen:
        assert type(chosen) is kind


@pytest.mark.parametrize(
    ("kind", "skipped"),
    [(backend.SageMaker, set()), (backend.Local, {"hpo"}), (backend.DryRun, {"report", "predict"})],
)
def test_each_backend_skips_only_what_it_cannot_do(kind: type, skipped: set[str]):
    chosen = kind(parse_settings(["all", *ACCOUNT_ARGS]), session=None)
    steps = ("hpo", "train", "report", "deploy", "predict", "cleanup", "transform")
    assert {step for step in steps if _ends(chosen, step)} == skipped


def _ends(chosen: backend.Backend, step: str) -> bool:
    try:
        chosen.begin(step)
    except backend.StepEnds:
        return True
    return False


def test_samples_come_from_the_test_split_else_the_validation_split_else_the_breed_folders(tmp_path):
    data = tmp_path / "dogImages"
    (data / "001.Affenpinscher").mkdir(parents=True)
    uri = f"file://{data}"
    assert dataset.sample_source(uri, None) == uri and dataset.channels(uri, None) == {"training": uri}
    for split, expected in (("validation", "validation"), ("Train", "validation"), ("TEST", "TEST")):
        (data / split).mkdir()
        assert dataset.sample_source(uri, None) == f"{uri}/{expected}"
    expected = {"train": f"{uri}/Train", "validation": f"{uri}/validation", "test": f"{uri}/TEST"}
    assert dataset.channels(uri, None) == expected
