"""Spot interruption and StopTrainingJob: a real SIGTERM mid-epoch leaves a checkpoint and delivers the best model so
far; the rerun resumes at the next epoch and delivers the best epoch across both runs. A SIGTERM before training
(while an archive unpacks) stops the job at once."""

import json
import re
import shutil
import signal
import time
import zipfile
from pathlib import Path

import torch
from PIL import Image
from torch.nn import functional
from train_support import children, wait_for

from dogbreed import train
from dogbreed.model import load_artifact
from dogbreed.presets import ClassificationPresetEval

SLOW_EPOCHS = {"epochs": "4", "fine_tune": "head", "augment": "true", "batch_size": "4", "patience": "0"}
EPOCH_LINE = re.compile(r"\bepoch=(\d+) train_loss=\S+ train_acc=\S+ valid_loss=(\S+) valid_acc=(\S+)")
FINAL_LINE = re.compile(r"final best_epoch=(\d+) valid_loss=(\S+) valid_acc=(\S+) test_loss=\S+ test_acc=(\S+)")


def evaluate_artifact(model_dir: Path, split: Path) -> tuple[float, float]:
    """Cross-entropy and accuracy of the delivered model on one split, computed here from the files alone."""
    artifact = load_artifact(model_dir)
    transform = ClassificationPresetEval(config=artifact.preprocess)
    images = sorted(split.rglob("*.jpg"))
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in images])
    labels = torch.tensor([artifact.class_names.index(p.parent.name) for p in images])
    with torch.inference_mode():
        outputs = artifact.model(batch)
    loss = functional.cross_entropy(outputs, labels).item()
    return loss, (outputs.argmax(1) == labels).float().mean().item()


def test_sigterm_checkpoints_and_rerun_resumes_with_the_best_epoch(sm_tree, start_train, run_train):
    base = sm_tree(SLOW_EPOCHS, per_class=40)
    process = start_train(base)
    wait_for("checkpoints/checkpoint-0001.pt", base)
    time.sleep(0.3)  # into epoch 2
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    log, _ = process.communicate(timeout=120)
    stopped_after = time.monotonic() - sent

    assert process.returncode == train.EXIT_STOPPED, log
    assert stopped_after < 60 and "received signal 15" in log
    assert "training stopped by SIGTERM" in (base / "output" / "failure").read_text()
    newest = sorted((base / "checkpoints").glob("checkpoint-*.pt"))[-1]
    saved = torch.load(newest, weights_only=True)
    done = saved["epochs_done"]
    assert {key.split(".")[0] for key in saved["model"]} == {"fc"}  # fine_tune=head: the frozen backbone is rebuilt
    assert 1 <= done < 4
    stopped_best = torch.load(base / "checkpoints" / "best.pt", weights_only=True)["epoch"]
    assert stopped_best <= done
    # SageMaker uploads /opt/ml/model of a stopped job: it holds the best epoch so far, said to be untested
    stopped_config = json.loads((base / "model" / "model_config.json").read_text())
    assert stopped_config["metrics"]["best_epoch"] == stopped_best and "stopped" in stopped_config["metrics"]
    assert stopped_config["int8"]["skipped"].startswith("stopped by SIGTERM")
    assert f"best epoch's model so far (epoch {stopped_best}) delivered" in (base / "output" / "failure").read_text()
    assert (base / "output" / "data" / "metrics.json").is_file()

    rerun = run_train(base)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"after {done} completed epoch(s)" in rerun.stdout
    assert not (base / "output" / "failure").exists()  # the interrupted run's failure is gone
    rows = {int(e): (float(loss), float(acc)) for e, loss, acc in EPOCH_LINE.findall(log + rerun.stdout)}
    assert [int(e) for e, *_ in EPOCH_LINE.findall(log)] == list(range(1, done + 1))
    assert [int(e) for e, *_ in EPOCH_LINE.findall(rerun.stdout)] == list(range(done + 1, 5))
    best = min(rows, key=lambda epoch: rows[epoch][0])
    ((epoch, valid_loss, valid_acc, test_acc),) = FINAL_LINE.findall(rerun.stdout)
    assert (int(epoch), float(valid_loss), float(valid_acc)) == (best, *rows[best])
    config = json.loads((base / "model" / "model_config.json").read_text())
    assert config["metrics"]["best_epoch"] == best and config["metrics"]["epochs"] == 4
    assert "stopped" not in config["metrics"] and "skipped" not in config["int8"]

    data = base / "input" / "data" / "training"
    assert abs(evaluate_artifact(base / "model", data / "valid")[0] - rows[best][0]) < 1e-3  # the best epoch's weights
    assert abs(evaluate_artifact(base / "model", data / "test")[1] - float(test_acc)) < 1e-3
    print(f"stopped {stopped_after:.1f}s after SIGTERM with {done} epoch(s) checkpointed; best epoch {best} of 4")


def test_sigterm_while_an_archive_unpacks_stops_the_job_at_once(sm_tree, start_train):
    """Before the epochs there is nothing to save, but a stop must still stop: without a handler the process
    would die of the signal (or ignore it, as a container's PID 1) and train on."""
    base = sm_tree({"epochs": "1"}, per_class=2)
    channel = base / "input" / "data" / "training"
    with zipfile.ZipFile(base / "dogImages.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for folder in channel.rglob("*"):
            archive.write(folder, folder.relative_to(channel))
        with archive.open("padding.bin", "w") as padding:  # unpacking takes a few seconds
            for _ in range(600):
                padding.write(bytes(1 << 20))
    shutil.rmtree(channel)
    channel.mkdir()
    (base / "dogImages.zip").rename(channel / "dogImages.zip")
    process = start_train(base)
    wait_for("input/unpacked/training/*", base)
    process.send_signal(signal.SIGTERM)
    log, _ = process.communicate(timeout=60)
    assert process.returncode == train.EXIT_STOPPED, log
    assert "before training started" in (base / "output" / "failure").read_text()
    assert "epoch=" not in log and not (base / "model").exists()


def test_sigterm_while_the_job_starts_stops_it(sm_tree, start_train):
    """A stop while the job is still importing torch, before its own handler exists: `train`'s first process
    reports the stop (it was a crash report or, as a container's PID 1, an ignored signal)."""
    base = sm_tree({"epochs": "1"}, per_class=2)
    process = start_train(base)
    deadline = time.monotonic() + 30
    while not children(process.pid):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    log, _ = process.communicate(timeout=60)
    assert process.returncode == train.EXIT_STOPPED, log
    assert (base / "output" / "failure").read_text().startswith("training stopped by SIGTERM")
    assert "epoch=" not in log and not (base / "model").exists()


def test_a_rerun_with_another_optimizer_is_refused_and_new_settings_win(sm_tree, caplog):
    """Was: optimizer=sgd after adam an internal error (KeyError 'momentum'); a new lr or weight_decay silently
    replaced by the checkpoint's."""
    first = {"epochs": "1", "fine_tune": "head", "augment": "false", "int8": "false", "lr_schedule": "none"}
    base = sm_tree({**first, "lr": "0.001"})
    environ = {"SAGEMAKER_BASE_DIR": str(base)}
    assert train.main(environ) == 0
    config = base / "input" / "config" / "hyperparameters.json"

    def rerun(**changed: str) -> int:
        config.write_text(json.dumps({**json.loads(config.read_text()), **changed}))
        return train.main(environ)

    assert rerun(epochs="2", optimizer="sgd") == train.EXIT_USER_ERROR
    message = (base / "output" / "failure").read_text()
    assert "checkpoint-0001.pt was written for a different setup" in message and "'optimizer': 'adam'" in message
    assert rerun(optimizer="adam", lr="0.05") == 0
    assert "after 1 completed epoch(s)" in caplog.text
    assert "optimizer settings, not the checkpoint's: lr=0.05 (checkpoint: 0.001)" in caplog.text
