"""Training hyperparameters: SageMaker's strings parsed and validated once into a typed object."""

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError

# Choices mapped to code by a table in the container, checked against these names at import (check_implemented):
# optimizers in dogbreed.engine.OPTIMIZERS, fine-tune modes in dogbreed.model.TRAINED_MODULES.
OPTIMIZERS = ("adam", "adamw", "sgd")
FINE_TUNE_MODES = ("head", "last_stage", "all")
# Choices read where they apply (dogbreed.hardware.feature_autocast, dogbreed.engine.lr_schedule, dogbreed.selection).
FEATURE_PRECISIONS = ("auto", "fp32")
LR_SCHEDULES = ("cosine", "none")
SELECT_BY = ("valid_loss", "valid_acc", "last")
# The settings under which `train` runs the frozen backbone once and trains the head on its features
# (dogbreed.recipes); anything else runs the backbone at every step.
CACHED_FEATURES = {"fine_tune": "head", "augment": False, "cache_features": True}
# Keys SageMaker (SDK, HPO) adds on its own; they are not ours to validate.
_PLATFORM_PREFIXES = ("sagemaker_", "_")

Parser = Callable[[str], Any]


def _number(kind: type, low: float | None = None, high: float | None = None) -> tuple[Parser, str]:
    """A parser for int/float within [low, high], and the description of what it accepts."""
    bounds = f"{kind.__name__} in [{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"

    def parse(raw: str) -> Any:
        number = float(raw)
        value = int(number) if kind is int and number.is_integer() else kind(raw)
        if not math.isfinite(number) or (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(raw)
        return value

    return parse, bounds


def _choice(options: tuple[str, ...]) -> tuple[Parser, str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError(raw)
        return raw.lower()

    return parse, "one of " + ", ".join(options)


def _bool() -> tuple[Parser, str]:
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

    def parse(raw: str) -> bool:
        return words[raw.lower()]

    return parse, "true or false"


def _hp(default: Any, spec: tuple[Parser, str], help_text: str) -> Any:
    return field(default=default, metadata={"parse": spec[0], "allowed": spec[1], "help": help_text})


@dataclass(frozen=True)
class Hyperparameters:
    """Every hyperparameter the training job understands, with its default."""

    epochs: int = _hp(10, _number(int, 1, 10_000), "passes over the training data")
    lr: float = _hp(3e-4, _number(float, 1e-8, 10.0), "learning rate (the peak, with `lr_schedule=cosine`)")
    batch_size: int = _hp(32, _number(int, 1, 4096), "images per batch (per training process)")
    optimizer: str = _hp("adam", _choice(OPTIMIZERS), "the optimizer: `adam`, `adamw` or `sgd`")
    weight_decay: float = _hp(0.0, _number(float, 0.0, 1.0), "L2 penalty (decoupled for adamw)")
    momentum: float = _hp(0.9, _number(float, 0.0, 1.0), "SGD momentum")
    image_size: int = _hp(224, _number(int, 32, 1024), "crop size fed to the network")
    augment: bool = _hp(True, _bool(), "random crop/flip/colour jitter on training images")
    pretrained: bool = _hp(
        True, _bool(), "ImageNet backbone (image cache or `pretrained` channel); never silently random"
    )
    fine_tune: str = _hp("head", _choice(FINE_TUNE_MODES), "`head` (backbone frozen), `last_stage`, `all`")
    hidden_units: int = _hp(
        256, _number(int, 0, 65_536), "head: 2048 → hidden → ReLU → Dropout → classes (0: linear head)"
    )
    dropout: float = _hp(0.3, _number(float, 0.0, 0.95), "head dropout")
    lr_schedule: str = _hp(
        "cosine",
        _choice(LR_SCHEDULES),
        "`cosine`: linear warm-up to `lr`, then cosine decay to 0 over the epochs (per step); `none`: constant `lr`",
    )
    warmup_epochs: float = _hp(
        1.0, _number(float, 0.0, 10_000), "`lr_schedule=cosine`: epochs of linear warm-up (fractions allowed)"
    )
    label_smoothing: float = _hp(
        0.1,
        _number(float, 0.0, 0.5),
        "label smoothing of the training loss; validation and test losses stay plain cross-entropy",
    )
    select_by: str = _hp(
        "valid_loss",
        _choice(SELECT_BY),
        "which epoch's model is delivered: lowest `valid_loss`, highest `valid_acc`, or `last`",
    )
    patience: int = _hp(
        0,
        _number(int, 0, 10_000),
        "stop after this many epochs without a better `select_by` (`valid_loss` for `last`); 0: never",
    )
    seed: int = _hp(42, _number(int, 0, 2**31 - 1), "random seed")
    num_workers: int = _hp(
        2,
        _number(int, 0, 64),
        "data loader processes (per training process; fewer when /dev/shm cannot hold their batches)",
    )
    train_fraction: float = _hp(
        1.0,
        _number(float, 1e-6, 1.0),
        "share of the training images used (a subset saves cost; it keeps an image of every class, and one smaller "
        "than the number of classes fails the job)",
    )
    max_train_images: int = _hp(0, _number(int, 0), "at most this many training images (0: all; as `train_fraction`)")
    valid_fraction: float = _hp(
        0.1,
        _number(float, 0.01, 0.5),
        "when the data has no validation split: the share of each class's training images held out to validate on "
        "(picked by file path; unused when a validation split is given)",
    )
    cache_features: bool = _hp(
        True,
        _bool(),
        "with `fine_tune=head` and `augment=false`, run the backbone once and train the head on cached features "
        "(the log's `recipe:` line says which way a job trains, and why)",
    )
    feature_precision: str = _hp(
        "auto",
        _choice(FEATURE_PRECISIONS),
        "backbone feature pass for `cache_features`: `auto` (bf16 + channels_last where the CPU has bf16, fp16 on "
        "GPU) or `fp32` (exact: trains the same head as `cache_features=false`, within 1e-4, tested)",
    )
    threads: int = _hp(0, _number(int, 0, 1024), "torch threads (0: cores per process)")
    processes_per_host: int = _hp(
        0,
        _number(int, 0, 1024),
        "training processes per host: 0 = one per GPU (1 on CPU); N > 1 on CPU runs N gloo processes",
    )
    profile: bool = _hp(False, _bool(), "torch.profiler trace of a few steps into `output/data/profile/`")
    int8: bool = _hp(
        True,
        _bool(),
        "after training, the int8 variant CPU serving prefers, gated on the validation split (costs a pass over it in "
        "fp32 and int8); `false` skips it, as tuning trials do (their models are discarded)",
    )

    @classmethod
    def from_strings(cls, raw: Mapping[str, str]) -> "Hyperparameters":
        """Parse SageMaker's hyperparameters.json values; UserError names key, value and what is allowed,
        or the unknown key and the closest known name (a typo must not train on defaults)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, text in raw.items():
            if key in known:
                values[key] = _parse_one(known[key], text)
            elif not key.startswith(_PLATFORM_PREFIXES):
                raise UserError(_unknown(key, text, list(known)))
        return cls(**values)

    @classmethod
    def table(cls) -> str:
        """Every hyperparameter as a Markdown table: name, default, meaning (README "Training", train --help)."""
        rows = ["| name | default | meaning |", "| --- | --- | --- |"]
        for f in dataclasses.fields(cls):
            default = str(f.default).lower() if isinstance(f.default, bool) else f.default
            rows.append(f"| `{f.name}` | {default} | {f.metadata['help']} |")
        return "\n".join(rows) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def why_not_cached_features(self) -> list[str]:
        """The settings (key=value) that keep this job from training on cached features; [] when it does."""
        values = {key: getattr(self, key) for key in CACHED_FEATURES}
        return [setting(key, value) for key, value in values.items() if value != CACHED_FEATURES[key]]


def setting(key: str, value: object) -> str:
    """A hyperparameter as a user writes it: augment=false."""
    return f"{key}={str(value).lower()}"


def check_implemented(names: tuple[str, ...], implemented: Iterable[str], what: str) -> None:
    """Called where a choice's names are mapped to code, at import: the mapping covers exactly the contract's names."""
    if sorted(implemented) != sorted(names):
        raise RuntimeError(f"{what} implements {sorted(implemented)}; the contract names {list(names)}")


def _unknown(key: str, text: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown hyperparameter {key}={text!r}: {hint}known: {', '.join(known)}"


def unquote(value: object) -> str:
    """A hyperparameter value as the job reads it: the SageMaker SDK JSON-encodes strings ("\"adam\"")."""
    return str(value).strip().strip('"').strip()


def _parse_one(spec: dataclasses.Field, text: str) -> Any:
    try:
        return spec.metadata["parse"](unquote(text))
    except (ValueError, KeyError, OverflowError):
        raise UserError(
            f"hyperparameter {spec.name}={text!r} is invalid: expected {spec.metadata['allowed']} "
            f"({spec.metadata['help']}; default {spec.default!r})"
        ) from None
