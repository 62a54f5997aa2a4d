#!/usr/bin/env python3
"""Int8 libraries side by side, in one process: speed, agreement with fp32, load time, size, safe loading.

Usage: .venv/bin/python bench/int8_libraries.py --model-dir M [--calibration DIR] [--held-out DIR]
           [--calib-images 64] [--seconds 4] [--only fx_x86,ort_qdq,...]
Run it twice to compare a Cascade Lake (ml.m5.large) with this host: once as is, once with
ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI in the environment (oneDNN reads it once, at process start).

Candidates, each post-training static int8 calibrated on the same training images through the eval
transform, and each saved to a file and loaded back (what serving would do) before it is measured:
  fp32_eager      the model as trained: the agreement reference
  fp32_folded     the server's fp32 (batch norm folded, channels_last)
  bf16_folded     the server's bf16 (folded weights cast to bf16)
  fx_x86          torch.ao FX graph mode, get_default_qconfig_mapping("x86") (FBGEMM/oneDNN int8 kernels)
  fx_x86_stem_head_fp32  dogbreed.quantize in the legacy x86 layout: the same with the stem conv and the head
                  left in fp32 (what artifacts written before the fused layout hold)
  fx_onednn_fused dogbreed.quantize as `train` and the server run it: the same observers on the oneDNN engine,
                  each residual block's last conv + add + ReLU fused into one kernel
  pt2e_x86        torchao PT2E with X86InductorQuantizer, run without torch.compile (no C++ compiler at serve time)
  ort_fp32        ONNX Runtime, the fp32 ONNX export
  ort_qdq         ONNX Runtime static int8 (onnxruntime.quantization, QDQ, per-channel s8 weights, u8 activations)
Last line: <name>_img_s=… <name>_top1_agreement=… <name>_max_prob_diff=… <name>_load_s=… for each.
Needs, beside the product's requirements: onnxruntime onnx onnxscript (ort_*), torchao (pt2e_x86).
Run from the repository root.
"""

import argparse
import copy
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from precision_bench import folder_images, generated_images
from serve_bench import throughput

from dogbreed import hardware, quantize
from dogbreed.model import Artifact, load_artifact
from dogbreed.presets import ClassificationPresetEval, decode_rgb
from dogbreed.serving.predictor import prepare_for_inference

Forward = Callable[[torch.Tensor], np.ndarray]  # contiguous fp32 batch -> probabilities
log = logging.getLogger("int8_libraries")


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), dim=1).numpy()


def torch_forward(model: torch.nn.Module, dtype=torch.float32, channels_last: bool = True) -> Forward:
    layout = torch.channels_last if channels_last else torch.contiguous_format

    @torch.inference_mode()
    def forward(x: torch.Tensor) -> np.ndarray:
        return _softmax(model(x.to(dtype).contiguous(memory_format=layout)))

    return forward


# ------------------------------------------------------------------------------------ candidates


def fx_x86(artifact: Artifact, calib: torch.Tensor, tmp: Path) -> Callable[[], Forward]:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    def build(state: dict | None) -> torch.nn.Module:
        torch.backends.quantized.engine = "x86"
        mapping = get_default_qconfig_mapping("x86")
        prepared = prepare_fx(copy.deepcopy(artifact.model).eval(), mapping, (calib[:1],))
        if state is None:
            with torch.inference_mode():
                for chunk in calib.split(16):
                    prepared(chunk)
        converted = convert_fx(prepared)
        if state is not None:
            converted.load_state_dict(state)
        return converted

    path = tmp / "fx_x86.pt"
    torch.save(build(None).state_dict(), path)

    def load() -> Forward:  # serving rebuilds the graph from code and loads tensors only
        return torch_forward(build(torch.load(path, weights_only=True)))

    return load


def shipped(backend: str):
    """dogbreed.quantize's int8 in `backend`'s layout, saved and loaded as write_int8 and the server do."""

    def make(artifact: Artifact, calib: torch.Tensor, tmp: Path) -> Callable[[], Forward]:
        path = tmp / f"shipped_{backend}.pt"
        torch.save(quantize.quantize(artifact.model, calib.split(16), backend).state_dict(), path)

        def load() -> Forward:
            state = torch.load(path, weights_only=True)
            return torch_forward(quantize.load_int8(replace(artifact, int8={"backend": backend}, int8_state=state)))

        return load

    return make


def pt2e_x86(artifact: Artifact, calib: torch.Tensor, tmp: Path) -> Callable[[], Forward]:
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # strict=True: torch 2.14's default non-strict export trips the quantizer's conv+add+relu pattern
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    batch = torch.export.Dim("batch", min=1, max=64)
    model = copy.deepcopy(artifact.model).eval()
    exported = torch.export.export(model, (calib[:2],), dynamic_shapes=({0: batch},), strict=True)
    prepared = prepare_pt2e(exported.module(), quantizer)
    with torch.inference_mode():
        for chunk in calib.split(16):
            prepared(chunk)
    converted = convert_pt2e(prepared)
    torch.export.save(torch.export.export(converted, (calib[:2],), dynamic_shapes=({0: batch},)), tmp / "pt2e.pt2")

    def load() -> Forward:
        return torch_forward(torch.export.load(tmp / "pt2e.pt2").module(), channels_last=False)

    return load


def _onnx_export(model: torch.nn.Module, path: Path, size: int) -> None:
    example = torch.zeros(1, 3, size, size)
    torch.onnx.export(model.eval(), (example,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)  # fmt: skip


def _ort_session(path: Path) -> Forward:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(x: torch.Tensor) -> np.ndarray:
        return _softmax(torch.from_numpy(session.run(None, {"input": x.contiguous().numpy()})[0]))

    return forward


def ort_fp32(artifact: Artifact, calib: torch.Tensor, tmp: Path) -> Callable[[], Forward]:
    _onnx_export(artifact.model, tmp / "fp32.onnx", calib.shape[-1])
    return lambda: _ort_session(tmp / "fp32.onnx")


def ort_qdq(artifact: Artifact, calib: torch.Tensor, tmp: Path) -> Callable[[], Forward]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not (tmp / "fp32.onnx").is_file():
        _onnx_export(artifact.model, tmp / "fp32.onnx", calib.shape[-1])
    quant_pre_process(str(tmp / "fp32.onnx"), str(tmp / "pre.onnx"))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.chunks = iter(calib.split(16))

        def get_next(self):
            chunk = next(self.chunks, None)
            return None if chunk is None else {"input": chunk.numpy()}

    quantize_static(str(tmp / "pre.onnx"), str(tmp / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    return lambda: _ort_session(tmp / "int8.onnx")


def prepared(precision: str):
    def make(artifact: Artifact, calib: torch.Tensor, tmp: Path) -> Callable[[], Forward]:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        return lambda: torch_forward(prepare_for_inference(artifact.model, precision, "cpu"), dtype)

    return make


CANDIDATES = {
    "fp32_eager": lambda artifact, calib, tmp: lambda: torch_forward(artifact.model, channels_last=False),
    "fp32_folded": prepared("fp32"),
    "bf16_folded": prepared("bf16"),
    "fx_x86": fx_x86,
    "fx_x86_stem_head_fp32": shipped(quantize.LEGACY_BACKEND),
    "fx_onednn_fused": shipped(quantize.BACKEND),
    "pt2e_x86": pt2e_x86,
    "ort_fp32": ort_fp32,
    "ort_qdq": ort_qdq,
}


# ------------------------------------------------------------------------------------ measuring


def probabilities(forward: Forward, images: torch.Tensor) -> np.ndarray:
    return np.concatenate([forward(chunk) for chunk in images.split(16)])


def measure(name: str, make, artifact: Artifact, calib, held_out, *, seconds: float, tmp: Path, reference) -> dict:
    started = time.perf_counter()
    load = make(artifact, calib, tmp)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    forward = load()
    forward(held_out[:1])
    load_s = time.perf_counter() - started
    probs = probabilities(forward, held_out)
    ref = probs if reference is None else reference
    row = {
        "img_s": throughput(forward, held_out[:16], seconds),
        "top1_agreement": float((probs.argmax(1) == ref.argmax(1)).mean()),
        "max_prob_diff": float(np.abs(probs - ref).max()),
        "load_s": load_s,
        "build_s": build_s,
    }
    log.info("%-12s %s", name, "  ".join(f"{k}={v:.4g}" for k, v in row.items()))
    return {"probs": probs, **row}


def image_tensor(images, preprocess) -> torch.Tensor:
    transform = ClassificationPresetEval(config=preprocess)
    return torch.stack([transform(decode_rgb(image, config=preprocess)) for image in images])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="an artifact written by train")
    parser.add_argument("--calibration", type=Path, help="training images to calibrate on (default: generated)")
    parser.add_argument("--held-out", type=Path, help="held-out images (default: 40 generated per class)")
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4, help="timed seconds per candidate at batch 16")
    parser.add_argument("--only", default=",".join(CANDIDATES), help="comma-separated candidates")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    hardware.set_torch_threads(hardware.usable_cpus())
    artifact = load_artifact(args.model_dir)
    classes = len(artifact.class_names)
    rng = np.random.default_rng(0)
    calib_images = folder_images(args.calibration) if args.calibration else generated_images(classes, 12, seed=3)
    calib_images = [calib_images[i] for i in rng.permutation(len(calib_images))[: args.calib_images]]
    held = folder_images(args.held_out) if args.held_out else generated_images(classes, 40)
    calib, held_out = image_tensor(calib_images, artifact.preprocess), image_tensor(held, artifact.preprocess)
    log.info("%d calibration, %d held-out images; %d threads; cpu flags bf16=%s; torch %s", len(calib),
             len(held_out), torch.get_num_threads(), hardware.describe().cpu_has_bf16, torch.__version__)  # fmt: skip
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="int8_libraries_") as tmp:
        reference = None
        for name in ["fp32_eager", *[n for n in args.only.split(",") if n != "fp32_eager"]]:
            results[name] = measure(name, CANDIDATES[name], artifact, calib, held_out,
                                    seconds=args.seconds, tmp=Path(tmp), reference=reference)  # fmt: skip
            reference = results["fp32_eager"]["probs"]
    keys = ("img_s", "top1_agreement", "max_prob_diff", "load_s")
    print(" ".join(f"{name}_{k}={row[k]:.4g}" for name, row in results.items() for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
