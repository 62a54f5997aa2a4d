#!/usr/bin/env python3
"""Cache benchmark: a request's own CPU work alone, and right after a forward pass on the same core.

Usage: .venv/bin/python bench/cache_bench.py --model-dir DIR [--precision int8] [--batch 8] [--images 128]

On a 2-vCPU instance the request threads and the model's streams share the cores, so a request's open, decode
and eval transform usually run just after a forward has streamed the model's weights and activations through
the core's caches. Each figure is the median thread CPU time (ms) per photo of serve_bench's JPEGs, all on one
thread with one compute thread: "alone" right after the previous photo, "after_forward" right after a batch forward
of the served model, "after_sleep" the same with a 5 ms sleep in between (a clock slowed down by wide vector units
would recover; an evicted cache does not). Last line: <case>_<stage>_ms=… for each case and stage (open, decode,
transform), then request_after_forward_vs_alone=… (the three stages' sum) and precision=…
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from serve_bench import make_photos, real_photo_sources

from dogbreed.presets import ClassificationPresetEval, decode_pixels
from dogbreed.serving import codecs
from dogbreed.serving.predictor import Predictor, PredictorConfig


def stage_ms(
    transform: ClassificationPresetEval, photos: list[bytes], between: Callable[[], object]
) -> dict[str, float]:
    """Median thread CPU ms per photo of open, decode and the eval transform, each photo preceded by between()."""
    limits = codecs.DecodeLimits(max_pixels=40_000_000)
    times: dict[str, list[float]] = {"open": [], "decode": [], "transform": []}
    for body in photos:
        between()
        started = time.thread_time()
        image = codecs.open_image(body, limits)
        opened = time.thread_time()
        pixels = decode_pixels(image.opened, image.data)
        decoded = time.thread_time()
        transform(pixels)
        times["open"].append(opened - started)
        times["decode"].append(decoded - opened)
        times["transform"].append(time.thread_time() - decoded)
    return {stage: statistics.median(values) * 1e3 for stage, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--precision", default="int8", help="the served model's precision (default int8)")
    parser.add_argument("--batch", type=int, default=8, help="images per forward (default 8, a stream's at c16)")
    parser.add_argument("--images", type=int, default=128, help="photos per case (default 128)")
    args = parser.parse_args(argv)

    predictor = Predictor.load(args.model_dir, PredictorConfig(precision=args.precision, torch_threads=1))
    photos = make_photos(args.images, real_photo_sources(None))
    transform = ClassificationPresetEval(config=predictor.preprocess_config)
    size = predictor.preprocess_config.image_size
    batch = torch.zeros(args.batch, 3, size, size)
    cases = {
        "alone": lambda: None,
        "after_forward": lambda: predictor.forward(batch),
        "after_sleep": lambda: (predictor.forward(batch), time.sleep(0.005)),
    }
    try:
        stage_ms(transform, photos[:16], cases["alone"])  # warm-up
        results = {case: stage_ms(transform, photos, between) for case, between in cases.items()}
    finally:
        predictor.close()
    for case, stages in results.items():
        print(f"{case:14s} " + "  ".join(f"{stage} {ms:.3f} ms" for stage, ms in stages.items()))
    ratio = sum(results["after_forward"].values()) / sum(results["alone"].values())
    fields = [f"{case}_{stage}_ms={ms:.3f}" for case, stages in results.items() for stage, ms in stages.items()]
    print(" ".join([*fields, f"request_after_forward_vs_alone={ratio:.2f}", f"precision={predictor.precision}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
