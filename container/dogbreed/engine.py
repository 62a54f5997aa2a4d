"""The training loop proper: its construction from the hyperparameters (optimizer, schedule, loss, DDP), one epoch
of training, evaluation, backbone feature extraction (no env, no I/O)."""

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from .contract import hyperparams
from .contract.hyperparams import Hyperparameters
from .distributed import Cluster
from .errors import UserError
from .hardware import feature_autocast, training_autocast

# Each optimizer the contract names, built over the parameters that train.
OPTIMIZERS: dict[str, Callable[[list[nn.Parameter], Hyperparameters], torch.optim.Optimizer]] = {
    "adam": lambda params, hps: torch.optim.Adam(params, lr=hps.lr, weight_decay=hps.weight_decay),
    "adamw": lambda params, hps: torch.optim.AdamW(params, lr=hps.lr, weight_decay=hps.weight_decay),
    "sgd": lambda params, hps: torch.optim.SGD(params, lr=hps.lr, momentum=hps.momentum, weight_decay=hps.weight_decay),
}
hyperparams.check_implemented(hyperparams.OPTIMIZERS, OPTIMIZERS, "dogbreed.engine.OPTIMIZERS")

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """A stop was requested (SIGTERM); raised between batches so the caller can checkpoint."""


@dataclass(frozen=True)
class EpochResult:
    loss: float
    acc: float
    count: int


class SmoothedCrossEntropyLoss(nn.CrossEntropyLoss):
    """Cross-entropy with label smoothing in train mode, plain in eval mode: validation and test losses stay
    comparable across label_smoothing values (the tuning objective) and with the usual cross-entropy.
    The name must end in "Loss": smdebug's `losses` collection matches tensor names by "[Ll]oss_...output"."""

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        smoothing = self.label_smoothing if self.training else 0.0
        return functional.cross_entropy(outputs, labels, label_smoothing=smoothing)


def cosine_with_warmup(base_lr: float, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning rate for step n (0-based): linear warm-up to base_lr, then cosine decay to 0 at total_steps."""

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    return lr_at


def lr_schedule(hps: Hyperparameters, steps_per_epoch: int) -> Callable[[int], float] | None:
    """The learning rate per training step (lr_schedule, warmup_epochs); None: the optimizer's constant lr."""
    if hps.lr_schedule == "none":
        return None
    warmup = round(hps.warmup_epochs * steps_per_epoch)
    return cosine_with_warmup(hps.lr, hps.epochs * steps_per_epoch, warmup)


def _never() -> bool:
    return False


def _identity(totals: torch.Tensor) -> torch.Tensor:
    return totals


@dataclass
class Loop:
    """What one training run trains and how; `model` may be a DDP wrapper, `eval_model` never is."""

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    train_modules: list[nn.Module]  # put in train mode each epoch; frozen parts stay in eval (BatchNorm stats)
    eval_model: nn.Module | None = None
    should_stop: Callable[[], bool] = _never
    reduce: Callable[[torch.Tensor], torch.Tensor] = _identity  # sums (loss, correct, count) across hosts
    scaler: torch.amp.GradScaler | None = field(default=None)
    lr_at: Callable[[int], float] | None = None  # learning rate of the job's n-th step; None: the optimizer's own
    steps_done: int = 0  # training steps of the job so far (set on resume), counted over every batch

    def autocast(self) -> contextlib.AbstractContextManager:
        return training_autocast(self.device)

    def train_epoch(self, loader: DataLoader, on_step: Callable[[], None] | None = None) -> EpochResult:
        """One pass over loader; checks for a stop request before every batch."""
        self.model.eval()
        for module in [*self.train_modules, self.criterion]:
            module.train()
        totals = torch.zeros(3, dtype=torch.float64)
        for batch in loader:
            if self.should_stop():
                raise Interrupted("stop requested during training")
            self._schedule_step()
            if batch is None:  # no image of this batch could be decoded (data.collate_decoded)
                continue
            inputs, labels = (t.to(self.device, non_blocking=True) for t in batch)
            self.optimizer.zero_grad(set_to_none=True)
            with self.autocast(), _batch_of_one_explained():
                outputs = self.model(inputs)
                loss = self.criterion(outputs, labels)
            self._backward_step(loss)
            totals += _batch_totals(loss, outputs, labels)
            if on_step is not None:
                on_step()
        return _result(self.reduce(totals), "train")

    def _schedule_step(self) -> None:
        if self.lr_at is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.steps_done)
        self.steps_done += 1

    def _backward_step(self, loss: torch.Tensor) -> None:
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

    @torch.no_grad()
    def evaluate(self, loader: DataLoader, split: str, confusion: torch.Tensor | None = None) -> EpochResult:
        """Loss and accuracy over the whole loader of `split` (each process evaluates all of it: no reduction);
        counts (true, predicted) pairs into confusion when given."""
        model = self.eval_model or self.model
        model.eval()
        self.criterion.eval()
        totals = torch.zeros(3, dtype=torch.float64)
        for batch in loader:
            if self.should_stop():
                raise Interrupted("stop requested during evaluation")
            if batch is None:
                continue
            inputs, labels = (t.to(self.device) for t in batch)
            with self.autocast():
                outputs = model(inputs)
                loss = self.criterion(outputs, labels)
            totals += _batch_totals(loss, outputs, labels)
            if confusion is not None:
                pairs = (labels.cpu(), outputs.argmax(dim=1).cpu())
                confusion.index_put_(pairs, torch.ones(labels.numel(), dtype=confusion.dtype), accumulate=True)
        return _result(totals, split)


def make_loop(
    hps: Hyperparameters,
    module: nn.Module,
    trained: list[nn.Module],
    node: Cluster,
    *,
    steps_per_epoch: int,
    should_stop: Callable[[], bool] = _never,
    optimizer_state: dict | None = None,
    epochs_done: int = 0,
) -> Loop:
    """The loop that trains `module`'s unfrozen parameters (`trained` go to train mode each epoch) with the
    hyperparameters' optimizer, loss and schedule; DDP across processes, a GradScaler on CUDA. On resume, the
    optimizer's saved state (of the same optimizer: checkpoint.signature) and the schedule continue after
    epochs_done, with this job's hyperparameters."""
    optimizer = OPTIMIZERS[hps.optimizer]([p for p in module.parameters() if p.requires_grad], hps)
    schedule = lr_schedule(hps, steps_per_epoch)
    if optimizer_state is not None:
        resume_optimizer(optimizer, optimizer_state, scheduled={"lr"} if schedule else set())
    return Loop(
        model=DistributedDataParallel(module) if node.distributed else module,
        criterion=SmoothedCrossEntropyLoss(label_smoothing=hps.label_smoothing),
        optimizer=optimizer,
        device=node.device,
        train_modules=trained,
        eval_model=module,
        should_stop=should_stop,
        reduce=node.sum,
        scaler=torch.amp.GradScaler("cuda") if node.device.type == "cuda" else None,
        lr_at=schedule,
        steps_done=epochs_done * steps_per_epoch,
    )


def resume_optimizer(optimizer: torch.optim.Optimizer, state: dict, scheduled: set[str]) -> None:
    """Load a checkpoint's optimizer state (its moments, momentum buffers), keeping the hyperparameters the optimizer
    was built with (lr, weight_decay, momentum, betas): load_state_dict would put back the checkpoint's. The log
    names those that differ, but for `scheduled` ones (set at every step anyway)."""
    wanted = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, values in zip(optimizer.param_groups, wanted, strict=True):
        changed = [key for key, value in values.items() if key not in scheduled and group.get(key) != value]
        if changed:
            shown = ", ".join(f"{key}={values[key]} (checkpoint: {group.get(key)})" for key in changed)
            log.info("resuming with this job's optimizer settings, not the checkpoint's: %s", shown)
        group.update(values)


@contextlib.contextmanager
def _batch_of_one_explained() -> Iterator[None]:
    """BatchNorm in training mode refuses a batch whose channels hold one value each (one image, 1x1 feature maps at
    image_size=32): what to change, instead of PyTorch's ValueError."""
    try:
        yield
    except ValueError as exc:
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise UserError(
            "a training batch of one image cannot train BatchNorm at this image_size (1x1 feature maps): "
            "use batch_size >= 2, image_size >= 64, or fine_tune=head"
        ) from None


def _batch_totals(loss: torch.Tensor, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    count = labels.numel()
    correct = (outputs.argmax(dim=1) == labels).sum().item()
    return torch.tensor([loss.item() * count, correct, count], dtype=torch.float64)


def _result(totals: torch.Tensor, split: str) -> EpochResult:
    """Mean loss and accuracy over the images that decoded; none is no figure at all (not a loss of 0)."""
    loss_sum, correct, count = totals.tolist()
    if not count:
        raise nothing_decoded(split)
    return EpochResult(loss=loss_sum / count, acc=correct / count, count=int(count))


def nothing_decoded(split: str) -> UserError:
    """Every image of a split failed to decode when read (each passed the scan: truncated after a sound header,
    pixels decode_rgb refuses): the split has no figure to report, and its losses would read as perfect."""
    return UserError(
        f"no image of the {split} split could be decoded (every one was skipped as undecodable, see the warnings "
        "above): replace its images with readable ones"
    )


def backbone(model: nn.Module) -> nn.Module:
    """ResNet up to global pooling, flattened: the 2048-d features the head consumes (shares modules)."""
    return nn.Sequential(*list(model.children())[:-1], nn.Flatten(1))


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    should_stop: Callable[[], bool] = _never,
    precision: str = "auto",
    *,
    split: str,
) -> TensorDataset:
    """Run the frozen backbone once over loader, the images of `split` (channels_last, mixed precision); the head
    then trains on these. UserError when none of them decodes."""
    features = backbone(model).eval().to(memory_format=torch.channels_last)
    chunks, labels = [], []
    try:
        for batch in loader:
            if should_stop():
                raise Interrupted("stop requested during feature extraction")
            if batch is None:
                continue
            inputs, targets = batch
            with feature_autocast(device, precision):
                chunks.append(features(inputs.to(device, memory_format=torch.channels_last)).float().cpu())
            labels.append(targets)
    finally:
        features.to(memory_format=torch.contiguous_format)  # the saved model keeps its usual layout
    if not chunks:
        raise nothing_decoded(split)
    return TensorDataset(torch.cat(chunks), torch.cat(labels))
