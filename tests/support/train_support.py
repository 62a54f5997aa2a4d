"""Helpers for training tests: /opt/ml-shaped trees with generated data, and `train` run as a real process."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from local_test.make_sample_data import make_dataset

REPO = Path(__file__).resolve().parents[2]
TRAIN_BIN = REPO / "container" / "bin" / "train"
# Small, fast settings: tiny images, no loader processes, one thread per process, random init.
FAST = {"image_size": "32", "num_workers": "0", "batch_size": "8", "threads": "1", "pretrained": "false"}


def write_tree(
    base: Path,
    hyperparameters: dict[str, str],
    *,
    layout: str = "training",
    per_class: int = 12,
    resources: dict | None = None,
    checkpoint_dir: Path | None = None,
) -> Path:
    """An /opt/ml tree: config JSONs as SageMaker writes them, and generated images in the given channel layout."""
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    data = base / "input" / "data"
    if layout == "training":
        make_dataset(data / "training", per_class=per_class, classes=4, size=(40, 40))
    elif layout in ("channels", "train_only"):  # train / validation / test as separate channels, or train alone
        make_dataset(base / "dataset", per_class=per_class, classes=4, size=(40, 40))
        pairs = (("train", "train"), ("valid", "validation"), ("test", "test"))
        for split, channel in pairs[:1] if layout == "train_only" else pairs:
            (data / channel).parent.mkdir(parents=True, exist_ok=True)
            (base / "dataset" / split).rename(data / channel)
    channels = [p.name for p in data.iterdir()] if data.is_dir() else []
    (config / "inputdataconfig.json").write_text(json.dumps({c: {"TrainingInputMode": "File"} for c in channels}))
    if resources:
        (config / "resourceconfig.json").write_text(json.dumps(resources))
    if checkpoint_dir:
        (config / "checkpointconfig.json").write_text(json.dumps({"LocalPath": str(checkpoint_dir)}))
    return base


def train_env(base: Path, **extra: str) -> dict[str, str]:
    """Environment for a `train` subprocess: the tree as SAGEMAKER_BASE_DIR, the package importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMDEBUG", "MASTER_"))}
    env.update(SAGEMAKER_BASE_DIR=str(base), PYTHONPATH=str(REPO / "container"), PYTHONUNBUFFERED="1", **extra)
    return env


def run_train(base: Path, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    """Run the image's `train` entry point as SageMaker would (a fresh process), capturing its log."""
    command = [sys.executable, str(TRAIN_BIN)]
    env = train_env(base, **extra)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def start_train(base: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(TRAIN_BIN)],
        env=train_env(base, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path_glob: str, base: Path, timeout: float = 120) -> None:
    """Wait until a file matching path_glob (e.g. checkpoints/checkpoint-0001.pt) appears under base."""
    deadline = time.monotonic() + timeout
    while not list(base.glob(path_glob)):
        assert time.monotonic() < deadline, f"{path_glob} never appeared"
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    """The processes whose parent is pid (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def group_alive(pgid: int, timeout: float) -> bool:
    """Whether a process of the group is still there after timeout seconds (killed ones need a moment to go)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True
