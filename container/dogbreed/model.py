"""ResNet50 + dense head, and the model artifact: weights, class names and config in one directory."""

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from .contract.hyperparams import FINE_TUNE_MODES, check_implemented
from .errors import ArtifactError, UserError, describe
from .files import json_bytes, load_tensors, torch_bytes, write_atomically, writing
from .presets import PreprocessConfig

log = logging.getLogger(__name__)

ARCHITECTURE = "resnet50"
WEIGHTS_FILE = "model.pt"
INT8_WEIGHTS_FILE = "model_int8.pt"  # written by dogbreed.quantize
CONFIG_FILE = "model_config.json"
# What torch 2.14 says, once per process, about the quantized tensors the int8 model runs on (README "Int8: which
# library": the risk, and the measured replacements). Printed in every training job and by every server worker,
# these tracebacks read as faults; int8_notices_silenced() drops these three messages and no other.
INT8_DEPRECATION_NOTICES = (
    r"TypedStorage is deprecated",  # torch.load rebuilding a quantized tensor
    r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation functions",
    r"Please use quant_min and quant_max",  # the x86 qconfig's observers (reduce_range)
)
BACKBONE_FEATURES = 2048
IMAGENET_WEIGHTS = ResNet50_Weights.IMAGENET1K_V2


@dataclass(frozen=True)
class HeadConfig:
    """The classifier head that replaces ResNet50's fc: 2048 → hidden_units → ReLU → Dropout → classes."""

    num_classes: int
    hidden_units: int = 256  # 0: a single linear layer
    dropout: float = 0.3


def build_model(head: HeadConfig) -> nn.Module:
    """ResNet50 with random weights and our head; load backbone weights separately."""
    model = resnet50(weights=None)
    if head.hidden_units:
        model.fc = nn.Sequential(
            nn.Linear(BACKBONE_FEATURES, head.hidden_units),
            nn.ReLU(inplace=True),
            nn.Dropout(head.dropout),
            nn.Linear(head.hidden_units, head.num_classes),
        )
    else:
        model.fc = nn.Linear(BACKBONE_FEATURES, head.num_classes)
    return model


# What each fine_tune mode (named in the contract) trains: the head; + ResNet's last stage; everything.
TRAINED_MODULES: dict[str, Callable[[nn.Module], list[nn.Module]]] = {
    "head": lambda model: [model.fc],
    "last_stage": lambda model: [model.layer4, model.fc],
    "all": lambda model: [model],
}
check_implemented(FINE_TUNE_MODES, TRAINED_MODULES, "dogbreed.model.TRAINED_MODULES")


def freeze(model: nn.Module, fine_tune: str) -> list[nn.Module]:
    """Freeze all but the modules fine_tune trains; returns those."""
    trained = TRAINED_MODULES[fine_tune](model)
    model.requires_grad_(False)
    for module in trained:
        module.requires_grad_(True)
    return trained


def cached_imagenet_weights_path() -> Path:
    """Where the image build put torchvision's ImageNet weights (under $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(IMAGENET_WEIGHTS.url).name


def load_backbone(model: nn.Module, weights_file: Path) -> None:
    """Load an ImageNet-style ResNet50 state_dict into the backbone; the head keeps its init."""
    try:
        state = load_tensors(weights_file)
    except ValueError as exc:
        raise UserError(f"cannot load pretrained weights from {weights_file}: {exc}") from exc
    if not isinstance(state, dict):
        raise UserError(f"pretrained weights file {weights_file} is not a state_dict")
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = model.load_state_dict(backbone, strict=False)
    except RuntimeError as exc:  # a tensor of another shape (another ResNet's width or depth)
        shapes = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        raise UserError(
            f"pretrained weights file {weights_file} does not fit ResNet50: {len(shapes)} tensor(s) of another shape "
            f"(e.g. {shapes[:1]})"
        ) from None
    missing_backbone = [k for k in missing if not k.startswith("fc.")]
    if missing_backbone or unexpected:
        raise UserError(
            f"pretrained weights file {weights_file} does not fit ResNet50: "
            f"{len(missing_backbone)} missing keys (e.g. {missing_backbone[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    log.info("loaded pretrained backbone weights from %s", weights_file)


@dataclass(frozen=True)
class Artifact:
    """Everything serving needs, as training wrote it."""

    model: nn.Module
    class_names: list[str]
    head: HeadConfig
    preprocess: PreprocessConfig
    metrics: dict = field(default_factory=dict)
    int8: dict = field(default_factory=dict)  # the int8 accuracy gate (dogbreed.quantize); {}: no int8 variant
    int8_state: dict | None = None  # the int8 model's tensors, when the gate passed


def save_artifact(
    model_dir: Path,
    model: nn.Module,
    *,
    class_names: list[str],
    head: HeadConfig,
    preprocess: PreprocessConfig,
    metrics: dict | None = None,
) -> None:
    """Write model.pt (state_dict) and model_config.json (architecture, head, classes, preprocessing, metrics of
    the delivered epoch), each atomically; a full or read-only model_dir is a UserError naming it and the cause."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    config = {
        "architecture": ARCHITECTURE,
        "head": asdict(head),
        "class_names": list(class_names),
        "preprocess": preprocess.to_dict(),
        "metrics": metrics or {},
    }
    with writing(model_dir, "the model"):
        write_atomically(model_dir / WEIGHTS_FILE, torch_bytes(state))
        write_atomically(model_dir / CONFIG_FILE, json_bytes(config))


def record_in_config(model_dir: Path, key: str, value: dict) -> None:
    """Add one section to an artifact's model_config.json."""
    path = model_dir / CONFIG_FILE
    config = json.loads(path.read_text())
    config[key] = value
    with writing(model_dir, "the model"):
        write_atomically(path, json_bytes(config))


@contextmanager
def int8_notices_silenced() -> Iterator[None]:
    """Inside the block, torch's deprecation notices about quantized tensors (INT8_DEPRECATION_NOTICES) are dropped.
    Not thread-safe (warnings filters are global): use it where models are built or loaded, not per request."""
    with warnings.catch_warnings():
        for notice in INT8_DEPRECATION_NOTICES:
            warnings.filterwarnings("ignore", notice, UserWarning)
        yield


def _int8_state(model_dir: Path, gate: dict) -> dict | None:
    """The int8 tensors when the gate passed (weights_only: tensors, never code); None if absent or unreadable."""
    path = model_dir / INT8_WEIGHTS_FILE
    if not gate.get("passed") or not path.is_file():
        return None
    try:
        with int8_notices_silenced():
            return load_tensors(path)
    except ValueError as exc:  # a broken optional file: serve fp32, say why
        log.warning("int8 weights %s cannot be loaded (%s): int8 will not be served", path, exc)
        return None


def _check_readable(path: Path) -> None:
    """ArtifactError unless path is a file this process may read; the message says what to fix."""
    try:
        if path.is_file():
            path.open("rb").close()
            return
    except OSError as exc:  # e.g. files root's own (0600) and the server run as another user
        raise ArtifactError(
            f"cannot read the model file {path}: {describe(exc)}; make it readable for uid {os.geteuid()} "
            f"(e.g. chmod -R a+rX {path.parent}), or run the server as its owner"
        ) from None
    raise ArtifactError(f"model artifact incomplete: {path} not found{_found_instead(path)}")


def _found_instead(missing: Path) -> str:
    """What the model directory holds instead of a missing file, and what to do about it."""
    model_dir = missing.parent
    if packed := next(model_dir.glob("*.tar.gz"), None):
        return (
            f"; found {packed.name} instead: SageMaker unpacks it, locally unpack it into {model_dir} "
            f"(tar -xzf {packed} -C {model_dir})"
        )
    if nested := next((p for p in model_dir.rglob(missing.name) if p.is_file()), None):
        return (
            f"; found {nested} instead: the archive has a top-level folder, pack the files at the archive's root "
            f"(tar -C {nested.parent.relative_to(model_dir)} -czf model.tar.gz .)"
        )
    return " (train first, or check the model data)"


def load_artifact(model_dir: Path) -> Artifact:
    """Load the artifact from model_dir onto the CPU, in eval mode; ArtifactError says what is wrong."""
    config_path, weights_path = model_dir / CONFIG_FILE, model_dir / WEIGHTS_FILE
    for path in (config_path, weights_path):
        _check_readable(path)
    try:
        config = json.loads(config_path.read_text())
        head = HeadConfig(**config["head"])
        class_names = list(config["class_names"])
        preprocess = PreprocessConfig.from_dict(config["preprocess"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"model config {config_path} is malformed: {exc!r}") from exc
    if config.get("architecture") != ARCHITECTURE or len(class_names) != head.num_classes:
        raise ArtifactError(
            f"model config {config_path} describes {config.get('architecture')!r} with "
            f"{head.num_classes} outputs and {len(class_names)} class names; expected {ARCHITECTURE!r}, equal counts"
        )
    model = build_model(head)
    try:
        model.load_state_dict(load_tensors(weights_path))
    except Exception as exc:  # torn or unsafe file (load_tensors), another shape, not a state_dict: several types
        raise ArtifactError(f"model weights {weights_path} cannot be loaded: {exc}") from exc
    model.eval()
    gate = config.get("int8") or {}
    return Artifact(model, class_names, head, preprocess, config.get("metrics", {}), gate, _int8_state(model_dir, gate))
