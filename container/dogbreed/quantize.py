"""The int8 variant of a trained model: post-training static quantization, its accuracy gate, save and load.

PyTorch FX graph mode on the oneDNN engine, whose backend config fuses each residual block's last
convolution, add and ReLU into one kernel (chosen by bench/int8_libraries.py over unfused x86, PT2E and
ONNX Runtime: README "Int8"). `train` calibrates on a sample of training images through the eval
transform, then compares int8 with fp32 on the validation split; the result (the gate) goes into
model_config.json under "int8", with the graph's layout ("backend"), the int8 tensors into model_int8.pt.
Loading rebuilds that layout from code and loads tensors only (torch.load(weights_only=True)): no pickled
code. A model failing the gate is never served in int8.
"""

import copy
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from . import data
from .contract import metrics
from .engine import Interrupted
from .files import torch_bytes, write_atomically, writing
from .model import INT8_WEIGHTS_FILE, Artifact, int8_notices_silenced, record_in_config
from .presets import ClassificationPresetEval, PreprocessConfig

log = logging.getLogger(__name__)

BACKEND = "onednn"  # the layout write_int8 saves, recorded in the gate
LEGACY_BACKEND = "x86"  # the layout of artifacts whose gate names none (written before the fusion): unfused
# Observers: x86's (activations in 7 bits) on either layout: CPUs without VNNI (a Skylake-SP m5) sum u8 x s8
# products in saturating 16-bit pairs, which 7-bit activations keep exact. The gate is measured on the
# training host, so int8 must compute the same everywhere.
QCONFIG = "x86"
# Kept in fp32: the stem (full-resolution rounding is what flips near-ties) and the head. On a trained model
# all-int8 agreed with fp32 on 95 % of validation images, this on 100 %; its cost in speed: README "Int8".
FP32_MODULES = ("conv1", "fc")
CALIBRATION_IMAGES = 256  # a seeded sample of the training split; more changed nothing measurable
MIN_AGREEMENT = 0.99  # gate: top-1 agreement with fp32 on the validation split
MAX_ACCURACY_DROP = 0.01  # gate: validation accuracy may fall by at most 1 point
STOPPED = "stopped by SIGTERM: rerun the job to finish it"  # why a stopped job's artifact has no int8 variant

_Batch = TypeVar("_Batch")


def _backend_config(backend: str):
    """oneDNN's fuses conv + add + ReLU; None is FX's default (the x86 layout)."""
    from torch.ao.quantization.backend_config import get_onednn_backend_config

    return get_onednn_backend_config() if backend == "onednn" else None


def _prepare(model: nn.Module, example: torch.Tensor, backend: str) -> nn.Module:
    """The model with observers, for `backend`'s layout; its quantized engine becomes this process's (set here:
    convert_fx packs weights for the current engine, and an engine runs only the fused ops it packed)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = backend
    mapping = get_default_qconfig_mapping(QCONFIG)
    for name in FP32_MODULES:
        mapping.set_module_name(name, None)
    return prepare_fx(copy.deepcopy(model).cpu().eval(), mapping, (example,), backend_config=_backend_config(backend))


def quantize(model: nn.Module, calibration: Iterable[torch.Tensor], backend: str = BACKEND) -> nn.Module:
    """An int8 copy of the eval model, its activation ranges observed on the calibration batches."""
    from torch.ao.quantization.quantize_fx import convert_fx

    batches = iter(calibration)
    first = next(batches)
    with int8_notices_silenced():
        prepared = _prepare(model, first[:1], backend)
        with torch.inference_mode():
            for batch in itertools.chain([first], batches):
                prepared(batch)
        return convert_fx(prepared, backend_config=_backend_config(backend))


def int8_backend(gate: dict) -> str:
    """The layout of the artifact's int8 model."""
    return gate.get("backend", LEGACY_BACKEND)


def load_int8(artifact: Artifact) -> nn.Module:
    """The int8 model saved by write_int8, rebuilt in its layout around the fp32 model's architecture (tensors only)."""
    from torch.ao.quantization.quantize_fx import convert_fx

    backend, size = int8_backend(artifact.int8), artifact.preprocess.image_size
    with torch.ao.quantization.observer.warnings.catch_warnings():  # uncalibrated: replaced by the state below
        torch.ao.quantization.observer.warnings.simplefilter("ignore")
        prepared = _prepare(artifact.model, torch.zeros(1, 3, size, size), backend)
        structure = convert_fx(prepared, backend_config=_backend_config(backend))
    with int8_notices_silenced():
        structure.load_state_dict(artifact.int8_state)
    return structure


def _layout_refusal(backend: str) -> str | None:
    """Why an int8 model in `backend`'s layout cannot run here, or None."""
    engines = torch.backends.quantized.supported_engines
    if backend not in (BACKEND, LEGACY_BACKEND):
        return f"its int8 layout {backend!r} is not one this image reads ({BACKEND}, {LEGACY_BACKEND})"
    if backend not in engines:
        return f"this CPU has no {backend} int8 engine (torch supports {engines})"
    return None


def int8_refusal(artifact: Artifact) -> str | None:
    """Why this artifact may not be served in int8, or None when it may."""
    gate = artifact.int8
    if not gate:
        return "the artifact has no int8 variant (trained before int8 support, or quantization failed)"
    if gate.get("skipped"):
        return f"training did not make one ({gate['skipped']})"
    if not gate.get("passed"):
        return f"it failed the accuracy gate at training ({gate.get('reason', 'no reason recorded')})"
    if artifact.int8_state is None:
        return f"{INT8_WEIGHTS_FILE} is missing or unreadable"
    return _layout_refusal(int8_backend(gate))


@torch.inference_mode()
def compare(fp32: nn.Module, int8: nn.Module, loader: Iterable) -> dict:
    """The gate: int8 vs fp32 on labelled images (top-1 agreement, accuracies, largest probability difference)."""
    agree, right_fp32, right_int8, max_diff, count = 0, 0, 0, 0.0, 0
    fp32 = fp32.cpu().eval()
    for batch in loader:
        if batch is None:
            continue
        images, labels = batch
        p32, p8 = (torch.softmax(net(images), dim=1) for net in (fp32, int8))
        top32, top8 = p32.argmax(1), p8.argmax(1)
        agree += int((top32 == top8).sum())
        right_fp32, right_int8 = right_fp32 + int((top32 == labels).sum()), right_int8 + int((top8 == labels).sum())
        max_diff, count = max(max_diff, float((p32 - p8).abs().max())), count + len(labels)
    count = max(count, 1)
    figures = {"images": count, "top1_agreement": agree / count, "fp32_acc": right_fp32 / count}
    return judge({**figures, "int8_acc": right_int8 / count, "max_prob_diff": max_diff})


def judge(gate: dict) -> dict:
    """Add passed/reason to measured gate figures."""
    drop = gate["fp32_acc"] - gate["int8_acc"]
    failures = []
    if gate["top1_agreement"] < MIN_AGREEMENT:
        failures.append(f"top-1 agreement {gate['top1_agreement']:.4f} < {MIN_AGREEMENT}")
    if drop > MAX_ACCURACY_DROP:
        failures.append(f"accuracy {gate['fp32_acc']:.4f} -> {gate['int8_acc']:.4f}, down more than 1 point")
    return {**gate, "accuracy_drop": drop, "passed": not failures, "reason": "; ".join(failures) or "passed"}


def _eval_loader(images: data.ImageList, preprocess: PreprocessConfig, seed: int) -> DataLoader:
    evaluate = ClassificationPresetEval(config=preprocess)
    return data.make_loader(images.with_transform(evaluate), batch_size=32, train=False, num_workers=0, seed=seed,
                            shard=None)  # fmt: skip


def calibration_batches(splits: data.Splits, preprocess: PreprocessConfig, seed: int) -> Iterator[torch.Tensor]:
    """A seeded sample of the training images through the eval transform (what serving will see)."""
    sample = data.subset(splits.train, fraction=1.0, limit=CALIBRATION_IMAGES, seed=seed)
    for batch in _eval_loader(sample, preprocess, seed):
        if batch is not None:
            yield batch[0]


def save_int8(model_dir: Path, int8: nn.Module | None, gate: dict) -> None:
    """model_int8.pt (tensors only; only for a model that passed; made by quantize() in BACKEND's layout) and the
    gate with that layout in model_config.json; without an int8 model, a previous job's model_int8.pt is removed."""
    with writing(model_dir, "the int8 model"):
        if int8 is None:
            (model_dir / INT8_WEIGHTS_FILE).unlink(missing_ok=True)
        else:
            write_atomically(model_dir / INT8_WEIGHTS_FILE, torch_bytes(int8.state_dict()))
            gate = {**gate, "backend": BACKEND}
    record_in_config(model_dir, "int8", gate)


def until_stopped(batches: Iterable[_Batch], should_stop: Callable[[], bool]) -> Iterator[_Batch]:
    """The batches, but Interrupted before the next one once a stop is requested (SageMaker gives a stopped job
    120 s: not enough to finish calibrating and gating a large model)."""
    for batch in batches:
        if should_stop():
            raise Interrupted("stop requested while the int8 variant was made")
        yield batch


def write_int8(
    model_dir: Path,
    model: nn.Module,
    splits: data.Splits,
    preprocess: PreprocessConfig,
    *,
    seed: int,
    should_stop: Callable[[], bool],
) -> dict:
    """Quantize the trained model, gate it on the validation split, save both beside the fp32 artifact.

    Never fails the job: a quantization error is recorded as a failed gate (the model is then served fp32). A stop
    (should_stop, checked between batches) records int8 as skipped and raises Interrupted.
    """
    started = time.perf_counter()
    try:
        int8 = quantize(model, until_stopped(calibration_batches(splits, preprocess, seed), should_stop))
        validation = until_stopped(_eval_loader(splits.valid, preprocess, seed), should_stop)
        gate = compare(copy.deepcopy(model), int8, validation)
    except Interrupted:
        save_int8(model_dir, None, {"passed": False, "skipped": STOPPED})
        raise
    except Exception as exc:  # an int8 problem must not lose the trained fp32 model
        log.exception("int8 quantization failed; the model will be served in fp32 or bf16")
        gate = {"passed": False, "reason": f"quantization failed: {exc!r}"}
    save_int8(model_dir, int8 if gate["passed"] else None, gate)
    figures = {k: float(gate[k]) for k in ("top1_agreement", "accuracy_drop", "max_prob_diff") if k in gate}
    took = f"{gate['reason']}; {time.perf_counter() - started:.1f} s"
    log.info(metrics.format_metrics("int8", {**figures, "gate_passed": float(gate["passed"])}) + f" ({took})")
    return gate
