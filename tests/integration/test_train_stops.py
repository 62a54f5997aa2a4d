"""A stop or failure at any phase after an epoch ended delivers the best epoch so far, untested, with the reports:
SIGTERM while the best epoch is tested, during a resumed job's feature pass, while int8 is made; a failure of a
later epoch (its checkpoint cannot be written). Each phase is reached by waiting for its log line or file."""

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import torch
from PIL import Image
from train_support import wait_for

from dogbreed import quantize, train
from dogbreed.model import load_artifact
from dogbreed.presets import ClassificationPresetEval

IMAGES = {"fine_tune": "head", "augment": "true", "int8": "false", "image_size": "64"}  # the model on images
CACHED = {"fine_tune": "head", "augment": "false", "int8": "false", "image_size": "64"}  # the head on features


def stop_at(process: subprocess.Popen, pattern: str) -> str:
    """SIGTERM as soon as the job logs a line matching pattern; its whole log once it has ended."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if re.search(pattern, line):
            process.send_signal(signal.SIGTERM)
            break
    rest, _ = process.communicate(timeout=120)
    return "".join(seen) + rest


def grow_test_split(base: Path, copies: int) -> None:
    """More test images (copies of each), so testing the best epoch takes a while."""
    for image in list((base / "input" / "data" / "training" / "test").rglob("*.jpg")):
        for n in range(copies):
            shutil.copy(image, image.with_name(f"{image.stem}_copy{n}.jpg"))


def delivered(base: Path) -> dict:
    """The delivered model's metrics, after checking what a user checks: it loads and predicts, the reports exist."""
    artifact = load_artifact(base / "model")
    image = next((base / "input" / "data" / "training" / "valid").rglob("*.jpg"))
    batch = ClassificationPresetEval(config=artifact.preprocess)(Image.open(image).convert("RGB"))[None]
    with torch.inference_mode():
        assert artifact.model(batch).shape == (1, len(artifact.class_names))
    assert (base / "output" / "data" / "metrics.json").is_file()
    return artifact.metrics


def failure(base: Path) -> str:
    return (base / "output" / "failure").read_text()


def test_sigterm_while_the_best_epoch_is_tested_delivers_it_untested(sm_tree, start_train):
    base = sm_tree({**IMAGES, "epochs": "2"})
    grow_test_split(base, 40)
    process = start_train(base)
    log = stop_at(process, r"\bepoch=2 ")

    assert process.returncode == train.EXIT_STOPPED, log
    assert "stop requested during evaluation" in failure(base), log
    best = torch.load(base / "checkpoints" / "best.pt", weights_only=True)["epoch"]
    assert f"model so far (epoch {best}) delivered" in failure(base)
    metrics = delivered(base)
    assert metrics["best_epoch"] == best and metrics["epochs"] == 2 and "stopped" in metrics
    assert "test_loss" not in metrics and f"final best_epoch={best} " in log
    assert json.loads((base / "model" / "model_config.json").read_text())["int8"]["skipped"] == quantize.STOPPED


def test_sigterm_in_a_resumed_jobs_feature_pass_delivers_the_earlier_best(sm_tree, start_train, run_train):
    base = sm_tree({**CACHED, "epochs": "1"})
    grow_test_split(base, 40)
    assert run_train(base).returncode == 0
    shutil.rmtree(base / "model")  # a new spot instance: only the checkpoints are back
    shutil.rmtree(base / "output")
    config = base / "input" / "config" / "hyperparameters.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "epochs": "2"}))
    process = start_train(base)
    log = stop_at(process, "computing backbone features")

    assert process.returncode == train.EXIT_STOPPED, log
    assert "stop requested during feature extraction" in failure(base)
    assert "model so far (epoch 1) delivered" in failure(base)
    metrics = delivered(base)
    assert metrics["best_epoch"] == 1 and metrics["epochs"] == 1 and "stopped" in metrics


def test_sigterm_while_int8_is_made_skips_it_and_exits_143(sm_tree, start_train):
    base = sm_tree({**CACHED, "epochs": "1", "int8": "true"})
    process = start_train(base)
    log = stop_at(process, "final best_epoch=")

    assert process.returncode == train.EXIT_STOPPED, log
    assert "while the int8 variant was made" in failure(base)
    metrics = delivered(base)
    assert "int8" in metrics["stopped"] and "test_acc" in metrics  # tested, only int8 is missing
    assert json.loads((base / "model" / "model_config.json").read_text())["int8"]["skipped"] == quantize.STOPPED
    assert not (base / "model" / "model_int8.pt").exists() and "int8 top1_agreement" not in log


def test_failure_of_a_later_epoch_delivers_the_best_epoch_so_far(sm_tree, start_train):
    base = sm_tree({**IMAGES, "epochs": "3", "batch_size": "4"}, per_class=30)
    process = start_train(base)
    wait_for("checkpoints/checkpoint-0001.pt", base)
    shutil.rmtree(base / "checkpoints")
    (base / "checkpoints").write_text("in the way")  # epoch 2's checkpoint (or best.pt) cannot be written
    log, _ = process.communicate(timeout=120)

    assert process.returncode == train.EXIT_USER_ERROR, log
    assert failure(base).startswith("cannot write") and "untested" in failure(base)
    metrics = delivered(base)
    assert metrics["failed"].startswith("cannot write") and metrics["best_epoch"] in (1, 2)
    assert metrics["epochs"] >= metrics["best_epoch"] and "test_loss" not in metrics
