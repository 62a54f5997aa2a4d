"""Read a training run's smdebug tensors (a local directory) into the numbers the rule checks use."""

import logging
from pathlib import Path

import numpy as np

from .rules import RunTensors, Series

RELU_INPUT_REGEX = r".*relu_input"


def read_run(tensors_dir: Path) -> RunTensors:
    """Losses per mode, mean |gradient| per TRAIN step, relu-input variance per TRAIN step."""
    from smdebug.core.modes import ModeKeys  # smdebug is heavy: import it only for reports
    from smdebug.trials import create_trial

    logging.getLogger("smdebug").setLevel(logging.WARNING)  # its INFO lines would go to stdout
    trial = create_trial(str(tensors_dir))
    losses = trial.tensor_names(collection="losses")
    loss = losses[0] if losses else None
    return RunTensors(
        train_loss=_series(trial, loss, ModeKeys.TRAIN, _scalar),
        eval_loss=_series(trial, loss, ModeKeys.EVAL, _scalar),
        gradients={n: _series(trial, n, ModeKeys.TRAIN, _mean_abs) for n in trial.tensor_names(collection="gradients")},
        relu_inputs={
            n: _series(trial, n, ModeKeys.TRAIN, _variance) for n in trial.tensor_names(regex=RELU_INPUT_REGEX)
        },
    )


def _series(trial, name: str | None, mode, reduce) -> Series:
    if name is None:
        return Series()
    tensor = trial.tensor(name)
    steps = tensor.steps(mode=mode)
    return Series(list(steps), [reduce(tensor.value(step, mode=mode)) for step in steps])


def _scalar(value: np.ndarray) -> float:
    return float(np.asarray(value).reshape(-1)[0])


def _mean_abs(value: np.ndarray) -> float:
    return float(np.mean(np.abs(value)))


def _variance(value: np.ndarray) -> float:
    return float(np.var(value))
