"""Fixtures for training tests (helpers live in train_support.py)."""

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from train_support import FAST, run_train, start_train, write_tree


@pytest.fixture
def sm_tree(tmp_path: Path) -> Callable[..., Path]:
    """Factory: sm_tree(hyperparameters, **options) → base dir of a fresh /opt/ml-shaped tree (FAST settings)."""

    def make(hyperparameters: dict[str, str], **options) -> Path:
        return write_tree(tmp_path / "opt_ml", {**FAST, **hyperparameters}, **options)

    return make


@pytest.fixture(name="run_train")
def run_train_fixture() -> Callable[..., subprocess.CompletedProcess]:
    return run_train


@pytest.fixture(name="start_train")
def start_train_fixture() -> Callable[..., subprocess.Popen]:
    return start_train
