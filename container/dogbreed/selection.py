"""Which epoch's model the job delivers (hyperparameter select_by) and when it stops early (patience)."""

import math


def _key(row: dict, select_by: str) -> tuple[float, ...]:
    """Smaller is better; a NaN loss ranks last."""
    loss = row["valid_loss"] if math.isfinite(row["valid_loss"]) else math.inf
    return (-row["valid_acc"], loss) if select_by == "valid_acc" else (loss,)


def better(row: dict, than: dict | None, select_by: str) -> bool:
    """Whether this epoch's row replaces the best so far (select_by=last: every epoch does)."""
    return than is None or select_by == "last" or _key(row, select_by) < _key(than, select_by)


def epochs_without_improvement(history: list[dict], select_by: str) -> int:
    """Epochs since the best row (patience counts these; select_by=last watches valid_loss)."""
    if not history:
        return 0
    keys = [_key(row, select_by) for row in history]
    return len(history) - 1 - keys.index(min(keys))
