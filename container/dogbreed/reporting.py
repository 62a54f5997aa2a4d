"""Training reports in output/data/: per-epoch metrics (JSON + CSV) and the train-vs-valid loss plot."""

import csv
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
LOSS_PLOT = "loss.png"


def write_reports(out_dir: Path, history: list[dict], final: dict) -> None:
    """metrics.json (epochs + final), metrics.csv (one row per epoch) and loss.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_JSON).write_text(json.dumps({"epochs": history, "final": final}, indent=2))
    if history:
        with (out_dir / METRICS_CSV).open("w", newline="") as handle:
            columns = dict.fromkeys(key for row in history for key in row)  # rows resumed from older runs may lack some
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(history)
        plot_losses(history, out_dir / LOSS_PLOT)
    log.info("wrote training reports to %s", out_dir)


def plot_losses(history: list[dict], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display in a training container
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    ax.plot(epochs, [row["valid_loss"] for row in history], marker="o", label="valid")
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Training vs validation loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
