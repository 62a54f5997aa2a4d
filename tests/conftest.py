"""Fixtures shared by all test folders (training trees: helpers in support/train_support.py), and folder markers."""

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from train_support import FAST, run_train, start_train, write_tree

TESTS = Path(__file__).parent
# `pytest -m "not container"` skips what needs Docker; `-m "not integration and not container"` is tests/unit.
FOLDER_MARKERS = {TESTS / "integration": pytest.mark.integration, TESTS / "container": pytest.mark.container}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for folder, marker in FOLDER_MARKERS.items():
            if item.path.is_relative_to(folder):
                item.add_marker(marker)


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
