"""Training reports in output/data/: per-epoch metrics (JSON + CSV), the train-vs-valid loss plot, per-class
test accuracy with the confusion matrix (PNG), and recommendations."""

import csv
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from .advice import recommendations
from .files import json_bytes, writing

log = logging.getLogger(__name__)

METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
LOSS_PLOT = "loss.png"
CONFUSION_PLOT = "confusion.png"


def write_reports(
    out_dir: Path,
    history: list[dict],
    final: dict,
    class_names: list[str],
    confusion: torch.Tensor | None,
    *,
    train_counts: dict[str, int] | None = None,
) -> None:
    """metrics.json (epochs, final, per-class test accuracy, recommendations), metrics.csv, loss.png and
    confusion.png (rows: true class, columns: predicted; when there is a test split). train_counts (class →
    training images) lets the recommendations see an imbalanced training split."""
    per_class = per_class_accuracy(class_names, confusion) if confusion is not None else {}
    advice = recommendations(history, per_class=per_class, train_counts=train_counts)
    for line in advice:
        log.info("recommendation: %s", line)
    report = {"epochs": history, "final": final, "per_class": per_class, "recommendations": advice}
    with writing(out_dir, "training reports"):
        _write_files(out_dir, report, class_names, confusion)
    log.info("wrote training reports to %s", out_dir)


def per_class_accuracy(class_names: list[str], confusion: torch.Tensor) -> dict[str, dict]:
    """class → {"accuracy", "count"} from a confusion matrix (rows = true class), for the classes the split holds:
    one it lacks (allowed in valid/test, dogbreed.data) has no accuracy to rank among the weakest."""
    counts = confusion.sum(dim=1).tolist()
    hits = confusion.diagonal().tolist()
    return {
        name: {"accuracy": round(hit / count, 4), "count": count}
        for name, hit, count in zip(class_names, hits, counts, strict=True)
        if count
    }


def _write_files(out_dir: Path, report: dict, class_names: list[str], confusion: torch.Tensor | None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    history = report["epochs"]
    (out_dir / METRICS_JSON).write_bytes(json_bytes(report))
    if confusion is not None:
        _draw(plot_confusion, class_names, confusion, out_dir / CONFUSION_PLOT)
    else:  # not a previous job's, read as this model's
        (out_dir / CONFUSION_PLOT).unlink(missing_ok=True)
    if history:
        with (out_dir / METRICS_CSV).open("w", newline="") as handle:
            columns = dict.fromkeys(key for row in history for key in row)  # rows resumed from older runs may lack some
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(history)
        _draw(plot_losses, history, out_dir / LOSS_PLOT)


def _draw(plot: Callable[..., None], *args: object) -> None:
    """A plot is a picture of figures the JSON and CSV already hold: one that fails is a warning, not a job lost
    after its model was written."""
    try:
        plot(*args)
    except Exception as exc:  # matplotlib raises many types (fonts, layout, text)
        Path(args[-1]).unlink(missing_ok=True)  # not a previous job's picture in its place
        log.warning(
            "could not draw %s (%s: %s); its figures are in %s", args[-1], type(exc).__name__, exc, METRICS_JSON
        )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display in a training container
    from matplotlib import pyplot

    return pyplot


def plot_confusion(class_names: list[str], confusion: torch.Tensor, target: Path) -> None:
    """Counts per (true, predicted) class; the diagonal is what the model gets right."""
    plt = _pyplot()
    size = min(24.0, 3.0 + 0.18 * len(class_names))  # 133 breeds stay legible at small print
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion.numpy(), cmap="Blues")
    ticks = range(len(class_names))
    font = 8 if len(class_names) <= 20 else 4
    # Names as written: "$" is no TeX (parse_math), a non-UTF-8 byte of a folder name is shown escaped.
    labels = [name.encode("utf-8", "backslashreplace").decode() for name in class_names]
    ax.set_xticks(ticks, labels, rotation=90, fontsize=font, parse_math=False)
    ax.set_yticks(ticks, labels, fontsize=font, parse_math=False)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test split)")
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)


def plot_losses(history: list[dict], target: Path) -> None:
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    ax.plot(epochs, [row["valid_loss"] for row in history], marker="o", label="valid")
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Training vs validation loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
