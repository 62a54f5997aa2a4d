"""What survives a spot interruption: the state a checkpoint holds, atomic per-epoch checkpoints, the best epoch's
weights, resume from the newest, SIGTERM as a flag."""

import contextlib
import logging
import re
import signal
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from .contract.hyperparams import Hyperparameters
from .engine import Interrupted
from .errors import UserError
from .files import load_tensors, torch_bytes, write_atomically, writing
from .model import HeadConfig

log = logging.getLogger(__name__)

_NAME = re.compile(r"^checkpoint-(\d+)\.pt$")
KEEP = 2  # newest checkpoints kept; SageMaker syncs the directory to S3
BEST_FILE = "best.pt"


@dataclass
class Checkpoint:
    """Training state after `epochs_done` complete epochs (weights may include part of the next one)."""

    epochs_done: int
    model: dict
    optimizer: dict
    history: list[dict] = field(default_factory=list)
    signature: dict = field(default_factory=dict)  # what must match to resume: signature()


def _name(epochs_done: int) -> str:
    return f"checkpoint-{epochs_done:04d}.pt"


def save_checkpoint(directory: Path, checkpoint: Checkpoint) -> Path:
    """Write atomically (a kill mid-write never leaves a torn newest checkpoint); prune all but the newest KEEP."""
    target = directory / _name(checkpoint.epochs_done)
    with writing(directory, "a checkpoint"):
        write_atomically(target, torch_bytes(asdict(checkpoint)))
        for old in _checkpoints(directory)[:-KEEP]:
            old.unlink(missing_ok=True)
    log.info("saved checkpoint %s", target)
    return target


def _checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_latest(directory: Path, signature: dict) -> Checkpoint | None:
    """The newest checkpoint that loads (an unreadable one is skipped with a warning: KEEP are kept for this), or
    None; UserError when it belongs to a different model setup, or when none of several loads."""
    files = _checkpoints(directory)
    for path in reversed(files):
        try:
            checkpoint = _load(path, Checkpoint)
        except ValueError as exc:
            log.warning("skipping checkpoint %s: it cannot be loaded (%s)", path, exc)
            continue
        if checkpoint.signature != signature:
            raise UserError(
                f"checkpoint {path} was written for a different setup ({checkpoint.signature}) than this job "
                f"({signature}); use another checkpoint location or delete it to start over"
            )
        log.info("resuming from %s after %d completed epoch(s)", path, checkpoint.epochs_done)
        return checkpoint
    if files:
        raise UserError(f"no checkpoint in {directory} can be loaded ({', '.join(p.name for p in files)}; see the "
                        "warnings above): delete them to start over")  # fmt: skip
    return None


@dataclass
class Best:
    """The epoch whose model the job delivers so far: its metric row and the state of the modules that train."""

    epoch: int
    row: dict
    model: dict
    signature: dict = field(default_factory=dict)


_Saved = TypeVar("_Saved", Checkpoint, Best)


def _load(path: Path, kind: type[_Saved]) -> _Saved:
    """A Checkpoint or Best from its file; ValueError when the file is torn, foreign or unsafe."""
    state = load_tensors(path)
    try:
        return kind(**state)
    except TypeError:  # not a dict, or a dict of other fields
        raise ValueError(f"not a {kind.__name__.lower()} file of this container") from None


def save_best(directory: Path, best: Best) -> None:
    """Keep the best epoch's weights beside the checkpoints, as soon as it is found (spot-safe, synced to S3)."""
    with writing(directory, "the best model so far"):
        write_atomically(directory / BEST_FILE, torch_bytes(asdict(best)))
    log.info("epoch %d is the best so far: saved %s", best.epoch, directory / BEST_FILE)


def load_best(directory: Path, signature: dict) -> Best | None:
    """The best epoch saved by earlier runs of this job, or None (absent, unreadable, or for another setup)."""
    path = directory / BEST_FILE
    if not path.is_file():
        return None
    try:
        best = _load(path, Best)
    except ValueError as exc:
        log.warning("ignoring %s: it cannot be loaded (%s)", path, exc)
        return None
    if best.signature != signature:
        log.warning("ignoring %s: written for a different setup (%s)", path, best.signature)
        return None
    log.info("best model so far: epoch %d (%s)", best.epoch, path)
    return best


def signature(class_names: list[str], head: HeadConfig, hps: Hyperparameters) -> dict:
    """What must match to resume: the classes and head, what the frozen weights are rebuilt from on resume, and
    the optimizer whose state the checkpoint holds (another one's does not load; its settings may change)."""
    return {
        "class_names": class_names,
        "head": asdict(head),
        "optimizer": hps.optimizer,
        "fine_tune": hps.fine_tune,
        "pretrained": hps.pretrained,
        "seed": hps.seed,
    }


def trained_state(model: nn.Module, trained: list[nn.Module]) -> dict[str, torch.Tensor]:
    """The state of the modules that train: all a checkpoint needs, as a rerun rebuilds the frozen rest
    identically (2 MB instead of ResNet50's 94 MB per epoch for fine_tune=head, synced to S3 by SageMaker)."""
    prefixes = tuple(f"{name}." if name else "" for name, module in model.named_modules() if module in trained)
    return {key: value for key, value in model.state_dict().items() if key.startswith(prefixes)}


@dataclass(frozen=True)
class Checkpointer:
    """One process's view of the job's checkpoint directory: what it keeps (the state of the `trained` modules of
    `model`), for which setup (`signature`), and whether this process writes (only the master does)."""

    directory: Path
    signature: dict
    model: nn.Module
    trained: list[nn.Module]
    writes: bool

    def saved(self) -> tuple[Checkpoint | None, Best | None]:
        """The newest checkpoint and, when resuming, the best epoch found by earlier runs."""
        resumed = load_latest(self.directory, self.signature)
        best = load_best(self.directory, self.signature) if resumed else None
        if resumed and best is None:
            log.warning("no best model from the earlier run(s): the best is chosen among the epochs from here on")
        return resumed, best

    def restore(self, state: dict) -> None:
        """Load a checkpoint's or the best epoch's state; the frozen parts stay as pretrained/seed built them."""
        self.model.load_state_dict(state, strict=False)

    def save(self, optimizer: torch.optim.Optimizer, history: list[dict]) -> None:
        """A checkpoint after len(history) complete epochs."""
        if self.writes:
            state = trained_state(self.model, self.trained)
            checkpoint = Checkpoint(len(history), state, optimizer.state_dict(), history, self.signature)
            save_checkpoint(self.directory, checkpoint)

    def best_of(self, row: dict) -> Best:
        """A copy of the trained modules' state after this epoch, whose metric row is `row`."""
        state = {key: value.detach().clone() for key, value in trained_state(self.model, self.trained).items()}
        return Best(epoch=row["epoch"], row=row, model=state, signature=self.signature)

    def keep(self, best: Best) -> None:
        """The master saves the best epoch beside the checkpoints."""
        if self.writes:
            save_best(self.directory, best)


class StopFlag:
    """Set by SIGTERM (SageMaker's stop / spot interruption); the loop checks it between batches."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, _frame: object) -> None:
        log.warning("received signal %d: stopping after the current batch (checkpointing the epochs completed)", signum)
        self.requested = True


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """For the whole job: SIGTERM raises Interrupted at once (unpacking, scanning) until training installs its flag
    (stop_on_sigterm). A process without a handler would die of it, or, as PID 1 in a container, ignore it."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(f"received signal {signum} before training started (unpacking or reading the data)")


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[StopFlag]:
    """Install the SIGTERM handler for the duration of training; restore the previous one after."""
    flag = StopFlag()
    previous = signal.signal(signal.SIGTERM, flag._handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
