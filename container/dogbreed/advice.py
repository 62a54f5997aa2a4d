"""Recommendations derived from a run's curves, its test split and the Debugger rule verdicts (what our
users' notebooks wrote by hand). Dependency-free: orchestrate.py loads this module by path."""

from collections.abc import Iterable
from itertools import pairwise
from statistics import fmean

GAP = 0.10  # train_acc - valid_acc above this: the model fits training images it does not generalise from
LOW_TRAIN_ACC = 0.80  # below this at the end of training: the model cannot even fit its training data
SWING = 0.10  # mean epoch-to-epoch change of valid_acc above this: unstable training
WEAK_CLASS = 0.15  # per-class accuracy this far below the mean: a weak class
IMBALANCE = 5  # the largest training class this many times the smallest: the model learns to favour large classes

OVERFIT = "overfitting: use augment=true, more dropout or weight_decay, label_smoothing, or fewer epochs"
UNDERFIT = "underfitting: unfreeze the last stage (fine_tune=last_stage), train longer (epochs) or raise lr"
STILL_IMPROVING = "still improving at the last epoch: train longer (epochs)"
UNSTABLE = "validation accuracy swings between epochs: lower lr, or keep lr_schedule=cosine"
VANISHING = "vanishing gradients: raise lr, or train fewer frozen layers (fine_tune=last_stage)"
POOR_INIT = "poor weight initialisation: start from pretrained ImageNet weights (pretrained=true)"


def recommendations(
    history: list[dict],
    fired: Iterable[str] = (),
    per_class: dict | None = None,
    train_counts: dict[str, int] | None = None,
) -> list[str]:
    """Short, actionable lines; `fired` names the Debugger rules that fired; per_class maps class →
    {"accuracy", "count"} on the test split; train_counts class → training images."""
    fired = set(fired)
    found = []
    if history:
        found += _from_curves(history, fired)
    if "vanishing_gradient" in fired:
        found.append(VANISHING)
    if "poor_weight_initialization" in fired:
        found.append(POOR_INIT)
    if per_class:
        found += _weak_classes(per_class)
    if train_counts:
        found += _imbalance(train_counts)
    return found or ["no problem found in the curves, the rules or the test split"]


def _from_curves(history: list[dict], fired: set[str]) -> list[str]:
    last = history[-1]
    gap = last["train_acc"] - last["valid_acc"]
    underfit = last["train_acc"] < LOW_TRAIN_ACC  # then a train-valid gap is not the problem to fix first
    found = []
    if (gap > GAP and not underfit) or fired & {"overfit", "overtraining"}:
        found.append(f"{OVERFIT} (train_acc - valid_acc = {gap:.2f} at the last epoch)")
    if underfit or "loss_not_decreasing" in fired:
        found.append(f"{UNDERFIT} (train_acc {last['train_acc']:.2f} at the last epoch)")
    losses = [row["valid_loss"] for row in history]
    if len(history) >= 3 and losses[-1] == min(losses) and losses[-1] < losses[-2]:
        found.append(STILL_IMPROVING)
    accuracies = [row["valid_acc"] for row in history]
    if len(history) >= 3 and fmean(abs(b - a) for a, b in pairwise(accuracies)) > SWING:
        found.append(UNSTABLE)
    return found


def _weak_classes(per_class: dict) -> list[str]:
    mean = fmean(entry["accuracy"] for entry in per_class.values())
    weak = sorted(
        (entry["accuracy"], name) for name, entry in per_class.items() if entry["accuracy"] < mean - WEAK_CLASS
    )
    if not weak or len(weak) > len(per_class) / 2:  # most classes weak: the model, not their images, is the issue
        return []
    listed = ", ".join(f"{name} ({accuracy:.2f})" for accuracy, name in weak[:5])
    return [f"weakest classes on the test split (mean {mean:.2f}): {listed}: add or check their training images"]


def _imbalance(counts: dict[str, int]) -> list[str]:
    largest, smallest = max(counts, key=counts.__getitem__), min(counts, key=counts.__getitem__)
    if counts[largest] < IMBALANCE * counts[smallest]:
        return []
    return [
        f"imbalanced classes: {largest} has {counts[largest]} training images, {smallest} {counts[smallest]}: add "
        "images to the small classes (until then the model scores by favouring the large ones)"
    ]
