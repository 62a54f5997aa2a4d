"""The one metric log format: lines training prints, regexes SageMaker (and orchestrate.py) parse."""

EPOCH_FIELDS = ("train_loss", "train_acc", "valid_loss", "valid_acc")
TEST_FIELDS = ("test_loss", "test_acc")
_NUMBER = r"([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|nan|inf)"

# SageMaker MetricDefinitions: each regex's first group is the value. Names match the log keys.
METRIC_DEFINITIONS = [{"Name": name, "Regex": rf"\b{name}={_NUMBER}"} for name in (*EPOCH_FIELDS, *TEST_FIELDS)] + [
    {"Name": "epoch", "Regex": r"\bepoch=([0-9]+)\b"},
    {"Name": "best_epoch", "Regex": r"\bbest_epoch=([0-9]+)\b"},
]


def format_metrics(prefix: str, values: dict[str, float]) -> str:
    """One stable line: `<prefix> key=value ...` with 4 decimals."""
    return " ".join([prefix, *(f"{k}={v:.4f}" for k, v in values.items())])


def epoch_line(epoch: int, values: dict[str, float]) -> str:
    return format_metrics(f"epoch={epoch}", values)


def final_line(best_epoch: int, values: dict[str, float]) -> str:
    """The delivered model's figures: its epoch's validation loss/accuracy and the test split's. Its valid_*
    values are the last ones in the log, so a tuning job's objective is the model the trial delivers."""
    return format_metrics(f"final best_epoch={best_epoch}", values)
