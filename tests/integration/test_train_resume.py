"""Spot interruption: a real SIGTERM mid-epoch leaves a checkpoint and the best model so far; the rerun resumes at
the next epoch and delivers the best epoch across both runs."""

import json
import re
import signal
import time
from pathlib import Path

import torch
from PIL import Image
from torch.nn import functional
from train_support import wait_for

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
    assert 1 <= done < 4 and not (base / "model").exists()
    assert torch.load(base / "checkpoints" / "best.pt", weights_only=True)["epoch"] <= done

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

    data = base / "input" / "data" / "training"
    assert abs(evaluate_artifact(base / "model", data / "valid")[0] - rows[best][0]) < 1e-3  # the best epoch's weights
    assert abs(evaluate_artifact(base / "model", data / "test")[1] - float(test_acc)) < 1e-3
    print(f"stopped {stopped_after:.1f}s after SIGTERM with {done} epoch(s) checkpointed; best epoch {best} of 4")
