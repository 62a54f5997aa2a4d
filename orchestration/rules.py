"""Local versions of the five Debugger rules, over numbers read from the saved tensors (no managed rules needed).

Each follows the built-in rule of the same name and its default parameters (SageMaker Debugger's
"List of built-in rules"); where the managed rule scans step by step, windows are scaled down for
short runs so that a few epochs on a laptop still give a verdict.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean

FIRED, OK, NO_DATA = "fired", "ok", "no data"


@dataclass(frozen=True)
class Series:
    """One scalar per saved step."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class RunTensors:
    """What the checks read: losses per mode, mean |gradient| and relu-input variance per tensor."""

    train_loss: Series = Series()
    eval_loss: Series = Series()
    gradients: dict[str, Series] = field(default_factory=dict)
    relu_inputs: dict[str, Series] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    rule: str
    status: str
    detail: str


def _windows(values: Sequence[float], count: int) -> list[float]:
    """Means of `count` consecutive, equally long chunks."""
    size = len(values) / count
    return [fmean(values[round(i * size) : round((i + 1) * size)]) for i in range(count)]


def loss_not_decreasing(train: Series, num_steps: int = 10, diff_percent: float = 10.0) -> Verdict:
    """Fires when the last window's mean training loss is not diff_percent below the first window's,
    or is above the very first loss (divergence), or the loss is NaN."""
    name, values = "loss_not_decreasing", train.values
    if len(values) < 2:
        return Verdict(name, NO_DATA, f"{len(values)} training loss values saved; need 2")
    if not all(math.isfinite(v) for v in values):
        return Verdict(name, FIRED, "the training loss became NaN or infinite")
    window = max(1, min(num_steps, len(values) // 2))
    first, last = fmean(values[:window]), fmean(values[-window:])
    fired = last > first * (1 - diff_percent / 100) or last > values[0]
    detail = (
        f"mean training loss {first:.4g} (first {window} steps) → {last:.4g} (last {window} steps); "
        f"first step {values[0]:.4g}; required decrease {diff_percent:g}%"
    )
    return Verdict(name, FIRED if fired else OK, detail)


def overfit(train: Series, valid: Series, ratio_threshold: float = 0.1, patience: int = 1) -> Verdict:
    """Fires when (valid - train) / train of aligned windows exceeds ratio_threshold for `patience` windows in a row."""
    name = "overfit"
    count = min(len(train.values), len(valid.values), 10)
    if count < 1:
        return Verdict(name, NO_DATA, "needs losses in both TRAIN and EVAL modes")
    ratios = [
        (v - t) / t if t > 0 else math.inf
        for t, v in zip(_windows(train.values, count), _windows(valid.values, count), strict=True)
    ]
    run = longest = 0
    for ratio in ratios:
        run = run + 1 if ratio > ratio_threshold else 0
        longest = max(longest, run)
    detail = f"(valid - train) / train per window: {', '.join(f'{r:.2f}' for r in ratios)}; threshold {ratio_threshold}"
    return Verdict(name, FIRED if longest >= patience else OK, detail)


def overtraining(valid: Series, patience_validation: int = 10, delta: float = 0.01) -> Verdict:
    """Fires when the validation loss of the last `patience` steps never beats the earlier best by delta."""
    name, values = "overtraining", valid.values
    if len(values) < 2:
        return Verdict(name, NO_DATA, f"{len(values)} validation loss values saved; need 2")
    patience = max(1, min(patience_validation, len(values) // 2))
    best_before, best_recent = min(values[:-patience]), min(values[-patience:])
    detail = f"best validation loss {best_before:.4f} before the last {patience} steps, {best_recent:.4f} within them"
    return Verdict(name, FIRED if best_recent > best_before - delta else OK, detail)


def vanishing_gradient(gradients: dict[str, Series], threshold: float = 1e-7) -> Verdict:
    """Fires when any gradient tensor's mean absolute value drops below threshold at a saved step."""
    name = "vanishing_gradient"
    saved = [
        (v, tensor, s) for tensor, series in gradients.items() for s, v in zip(series.steps, series.values, strict=True)
    ]
    if not saved:
        return Verdict(name, NO_DATA, "no gradients saved (collection 'gradients')")
    smallest, tensor, step = min(saved)
    tiny = sum(v < threshold for v, _, _ in saved)
    detail = (
        f"{tiny} of {len(saved)} saved gradients below {threshold:g}; smallest {smallest:.3g} ({tensor}, step {step})"
    )
    return Verdict(name, FIRED if tiny else OK, detail)


def poor_weight_initialization(relu_inputs: dict[str, Series], threshold: float = 10.0) -> Verdict:
    """Fires when relu-input variances at the first saved step differ across layers by more than threshold x."""
    name = "poor_weight_initialization"
    first = {tensor: s.values[0] for tensor, s in relu_inputs.items() if s.values}
    if not first:
        return Verdict(name, NO_DATA, "no relu inputs saved (collection 'relu_input')")
    low, high = min(first.values()), max(first.values())
    ratio = high / low if low > 0 else math.inf
    spread = f"{low:.3g} … {high:.3g} (ratio {ratio:.3g}, threshold {threshold:g})"
    detail = f"relu-input variance across {len(first)} layers: {spread}"
    return Verdict(name, FIRED if ratio > threshold else OK, detail)


def evaluate(run: RunTensors) -> list[Verdict]:
    """The five verdicts, in the order the managed rules are configured."""
    return [
        vanishing_gradient(run.gradients),
        overfit(run.train_loss, run.eval_loss),
        overtraining(run.eval_loss),
        poor_weight_initialization(run.relu_inputs),
        loss_not_decreasing(run.train_loss),
    ]
