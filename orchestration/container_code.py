"""The container's own definitions the laptop side must agree with, loaded from container/dogbreed by path."""

import importlib.util
from pathlib import Path
from types import ModuleType

CONTAINER_PACKAGE = Path(__file__).resolve().parent.parent / "container" / "dogbreed"


def _load(module: str) -> ModuleType:
    """Import one dependency-free module of the container package without importing the package (torch)."""
    spec = importlib.util.spec_from_file_location(f"dogbreed_{module}", CONTAINER_PACKAGE / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def metric_definitions() -> list[dict[str, str]]:
    """SageMaker MetricDefinitions for the training log lines (the one definition lives in metrics.py)."""
    return [dict(d) for d in _load("metrics").METRIC_DEFINITIONS]


def recommendations(history: list[dict], fired: list[str], per_class: dict | None) -> list[str]:
    """The training job's own recommendations (advice.py), here also from the Debugger rules that fired."""
    return _load("advice").recommendations(history, fired, per_class)
