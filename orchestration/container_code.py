"""The container's own definitions the laptop side must agree with (the dogbreed package, installed by
scripts/setup_dev.sh; these modules import no torch)."""

from dogbreed import advice
from dogbreed.contract import metrics


def metric_definitions() -> list[dict[str, str]]:
    """SageMaker MetricDefinitions for the training log lines (the one definition lives in the contract)."""
    return [dict(d) for d in metrics.METRIC_DEFINITIONS]


def recommendations(history: list[dict], fired: list[str], per_class: dict | None) -> list[str]:
    """The training job's own recommendations (advice.py), here also from the Debugger rules that fired."""
    return advice.recommendations(history, fired, per_class)
