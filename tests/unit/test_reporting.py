"""Training reports: every file is written whatever the class folders are named."""

import json

import torch

from dogbreed.reporting import CONFUSION_PLOT, LOSS_PLOT, METRICS_CSV, METRICS_JSON, write_reports

HISTORY = [{"epoch": 1, "train_loss": 1.2, "train_acc": 0.4, "valid_loss": 1.1, "valid_acc": 0.5}]


def test_class_names_with_tex_and_bytes_that_are_not_utf8_are_drawn_and_reported(tmp_path):
    """ "$" would start matplotlib's TeX, and a Latin-1 folder name arrives as surrogate escapes: both once failed
    the job after its model was written."""
    names = ["001.$\\frac{$", "002.Caf\udce9", "003.Corgi"]
    confusion = torch.tensor([[2, 0, 1], [0, 3, 0], [1, 0, 2]])
    write_reports(tmp_path, HISTORY, {"best_epoch": 1}, names, confusion)
    for name in (METRICS_JSON, METRICS_CSV, LOSS_PLOT, CONFUSION_PLOT):
        assert (tmp_path / name).stat().st_size > 0, name
    per_class = json.loads((tmp_path / METRICS_JSON).read_text())["per_class"]
    assert per_class["001.$\\frac{$"] == {"accuracy": round(2 / 3, 4), "count": 3}
    assert per_class["002.Caf\udce9"]["accuracy"] == 1.0
