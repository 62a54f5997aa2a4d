"""The learning-rate schedule: linear warm-up, cosine decay to 0, applied per step by the real training loop."""

import math
from itertools import pairwise

import pytest
import torch

from dogbreed import train
from dogbreed.engine import cosine_with_warmup


def test_warmup_then_cosine_decay():
    lr_at = cosine_with_warmup(1.0, total_steps=20, warmup_steps=4)
    assert [lr_at(step) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    decay = [lr_at(step) for step in range(4, 21)]
    assert decay[0] == 1.0 and decay[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in pairwise(decay))
    assert lr_at(12) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_training_applies_the_schedule_per_step(sm_tree):
    base = sm_tree({"epochs": "3", "fine_tune": "head", "augment": "false", "lr": "0.01", "batch_size": "8"})
    assert train.main({"SAGEMAKER_BASE_DIR": str(base)}) == 0
    steps_per_epoch = 48 // 8  # 4 classes x 12 training images
    lr_at = cosine_with_warmup(0.01, 3 * steps_per_epoch, steps_per_epoch)

    def lr_after(epoch: int) -> float:
        saved = torch.load(base / "checkpoints" / f"checkpoint-{epoch:04d}.pt", weights_only=True)
        return saved["optimizer"]["param_groups"][0]["lr"]

    assert lr_after(2) == pytest.approx(lr_at(2 * steps_per_epoch - 1))
    assert lr_after(3) == pytest.approx(lr_at(3 * steps_per_epoch - 1)) and lr_after(3) < lr_after(2) / 10
