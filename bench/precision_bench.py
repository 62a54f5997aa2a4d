#!/usr/bin/env python3
"""Precision benchmark: agreement with exact fp32 and forward speed of each inference variant, on a TRAINED model.

Usage: .venv/bin/python bench/precision_bench.py --model-dir DIR [--held-out DIR] [--crops N] [--photos N]
  from the repository root

  --model-dir  an artifact written by `train` (model.pt + model_config.json)
  --held-out   a folder of images the model did not train on (e.g. the test/ split); default: freshly
               generated images of the artifact's classes (local_test/make_sample_data.py, another seed)
  --blended    also score N blends of two classes' generated images (near the decision boundary)
  --crops      also score N re-cropped held-out images (~500x375 crops, flips, exposure: serve_bench.py's
               recipe): partial views of known classes, where the model is less sure and rounding shows
  --photos     also score N re-cropped real photos (~500x375, bench/serve_bench.py's set): out of the
               training distribution, so the model is less sure of them and rounding matters more

Variants, all under inference_mode on the server's preprocessing (training's eval transform):
  fp32                 exact reference: the eager model as trained (contiguous)
  served_fp32          the server's fp32: batch norm folded into the convolutions, channels_last
  served_bf16          the server's bf16: the same folded model cast to bf16 (where the CPU lists bf16)
  served_int8          the artifact's int8 model (dogbreed.quantize), when it passed its accuracy gate
  bf16_autocast        the unfolded model under CPU bf16 autocast, channels_last (the usual recipe)
For each set: top-1 agreement with fp32, max |Δp| over all classes, and batch-16 img/s. Last line, for
each precision the server may run here, over every scored image:
  <precision>_top1_agreement=<a> <precision>_max_prob_diff=<d> ...   (e.g. int8_top1_agreement=0.996)
"""

import argparse
import copy
import io
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from serve_bench import make_photos, real_photo_sources, throughput

from dogbreed import hardware, quantize
from dogbreed.model import Artifact, load_artifact
from dogbreed.presets import ClassificationPresetEval, decode_rgb
from dogbreed.serving.predictor import INPUT_DTYPES, prepare
from local_test.make_sample_data import BREEDS, make_image

Forward = Callable[[torch.Tensor], torch.Tensor]  # preprocessed batch → probabilities (fp32)


def served_precisions(artifact: Artifact) -> list[str]:
    """What the server may run on this host: fp32, bf16 where the CPU lists it, int8 when the gate passed."""
    refusal = quantize.int8_refusal(artifact)
    if refusal:
        print(f"int8 not served: {refusal}")
    return hardware.serving_candidates("auto", device="cpu", host=hardware.describe(), int8_refusal=refusal)


def variants(artifact: Artifact, precisions: list[str]) -> dict[str, Forward]:
    """Each variant as a function of a contiguous fp32 batch; models are prepared once, here."""
    model = artifact.model.eval()
    served = {precision: prepare(artifact, precision, "cpu") for precision in precisions}
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def run(net, dtype=torch.float32, layout=torch.channels_last, autocast=False) -> Forward:
        def forward(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext():
                out = net(x.to(dtype).contiguous(memory_format=layout))
            return torch.softmax(out.float(), dim=1)

        return forward

    return {
        "fp32": run(model, layout=torch.contiguous_format),
        **{f"served_{precision}": run(net, INPUT_DTYPES[precision]) for precision, net in served.items()},
        "bf16_autocast": run(channels_last, autocast=True),
    }


def generated_images(class_count: int, per_class: int, seed: int = 7) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [make_image(c % len(BREEDS), rng, (320, 240)) for c in range(class_count) for _ in range(per_class)]


def blended_images(class_count: int, count: int, seed: int = 11) -> list[Image.Image]:
    """Two classes' images mixed half-and-half (weight 0.35-0.65): near the decision boundary, where
    rounding can flip the top class."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        a, b = rng.choice(min(class_count, len(BREEDS)), size=2, replace=False)
        first, second = make_image(int(a), rng, (320, 240)), make_image(int(b), rng, (320, 240))
        images.append(Image.blend(first, second, float(rng.uniform(0.35, 0.65))))
    return images


def folder_images(folder: Path) -> list[Image.Image]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [Image.open(p) for p in paths]


def recropped(count: int, sources: list[Image.Image]) -> list[Image.Image]:
    """serve_bench's photo set made from the sources: ~500x375 crops, flips and exposure changes as JPEGs."""
    return [Image.open(io.BytesIO(body)) for body in make_photos(count, [s.convert("RGB") for s in sources])]


@torch.inference_mode()
def probabilities(forward: Forward, batch: torch.Tensor) -> np.ndarray:
    return torch.cat([forward(chunk) for chunk in batch.split(16)]).numpy()


def score(sets: dict[str, torch.Tensor], forwards: dict[str, Forward], seconds: float) -> dict[str, dict]:
    """Per variant: agreement and max |Δp| per set and over all images, and batch-16 img/s."""
    reference = {name: probabilities(forwards["fp32"], batch) for name, batch in sets.items()}
    for name, ref in reference.items():
        print(f"{name}: {len(ref)} images, fp32 predicts {len(set(ref.argmax(1)))} classes, "
              f"median top-1 probability {np.median(ref.max(1)):.3f}")  # fmt: skip
    results = {}
    for variant, forward in forwards.items():
        agree, diff, row = [], [], {}
        for name, batch in sets.items():
            probs = probabilities(forward, batch)
            agree.append(probs.argmax(1) == reference[name].argmax(1))
            per_image = np.abs(probs - reference[name]).max(1)
            diff.append(per_image.max())
            row[name] = f"agree {agree[-1].mean():.4f} max_dp {diff[-1]:.4f} (>0.02: {(per_image > 0.02).sum()})"
        all_agree = np.concatenate(agree)
        with torch.inference_mode():
            img_s = throughput(forward, next(iter(sets.values()))[:16], seconds)
        results[variant] = {"agree": all_agree.mean(), "n": all_agree.size, "max_dp": max(diff), "img_s": img_s}
        print(
            f"{variant:<24} {results[variant]['img_s']:6.1f} img/s  " + "  ".join(f"{k}: {v}" for k, v in row.items())
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--held-out", type=Path, help="folder of held-out images (default: generated)")
    parser.add_argument("--per-class", type=int, default=40, help="generated held-out images per class")
    parser.add_argument("--blended", type=int, default=240, help="two-class blends to score (0: none)")
    parser.add_argument("--crops", type=int, default=256, help="re-cropped held-out images to score (0: none)")
    parser.add_argument("--photos", type=int, default=256, help="real re-cropped photos to score (0: none)")
    parser.add_argument("--seconds", type=float, default=3, help="timed seconds per variant")
    args = parser.parse_args(argv)
    hardware.set_torch_threads(hardware.usable_cpus())
    artifact = load_artifact(args.model_dir)
    transform = ClassificationPresetEval(config=artifact.preprocess)
    held_out = (
        folder_images(args.held_out) if args.held_out else generated_images(len(artifact.class_names), args.per_class)
    )
    image_sets = {"held_out": held_out} if held_out else {}
    if args.blended:
        image_sets["blended"] = blended_images(len(artifact.class_names), args.blended)
    if args.crops and held_out:
        image_sets["held_out_crops"] = recropped(args.crops, held_out)
    if args.photos:
        image_sets["real_photos"] = recropped(args.photos, real_photo_sources(None))
    sets = {name: torch.stack([transform(decode_rgb(i, config=artifact.preprocess)) for i in images])
            for name, images in image_sets.items()}  # fmt: skip
    print(f"model {args.model_dir}: {len(artifact.class_names)} classes, {artifact.preprocess.image_size} px; "
          f"{torch.get_num_threads()} threads, bf16 CPU: {hardware.describe().cpu_has_bf16}")  # fmt: skip
    precisions = served_precisions(artifact)
    results = score(sets, variants(artifact, precisions), args.seconds)
    print(f"images scored: {results['fp32']['n']}; reference: eager fp32")
    print(" ".join(f"{p}_top1_agreement={results[f'served_{p}']['agree']:.4f} "
                   f"{p}_max_prob_diff={results[f'served_{p}']['max_dp']:.4f}" for p in precisions))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
