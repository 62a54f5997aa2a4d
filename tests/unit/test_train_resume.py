"""Spot interruption: a real SIGTERM mid-epoch leaves a checkpoint; the rerun resumes at the next epoch."""

import re
import signal
import time

import torch
from train_support import wait_for

from dogbreed import train

SLOW_EPOCHS = {"epochs": "4", "fine_tune": "head", "augment": "true", "batch_size": "4"}


def test_sigterm_checkpoints_and_rerun_resumes(sm_tree, start_train, run_train):
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

    rerun = run_train(base)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"after {done} completed epoch(s)" in rerun.stdout
    epochs = [int(e) for e in re.findall(r"\bepoch=(\d+) ", rerun.stdout)]
    assert epochs == list(range(done + 1, 5))
    assert (base / "model" / "model.pt").is_file()
    print(f"stopped {stopped_after:.1f}s after SIGTERM with {done} epoch(s) checkpointed")
