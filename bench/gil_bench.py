#!/usr/bin/env python3
"""GIL benchmark: the served model's forward pass alone and beside a busy Python thread, traced and not.

Usage: .venv/bin/python bench/gil_bench.py --model-dir DIR [--precision int8] [--batch 8] [--rounds 5]

The server's request threads run Python (gunicorn, Flask, decoding) while its streams compute. A model
that is a Python module (FX GraphModule, eager) takes the GIL back between operators and waits for it
there; the traced graph the server runs (predictor.without_gil) releases it for the whole pass. Each
figure is the median ms per image of `--rounds` forwards at `--batch` on one compute thread, under
inference_mode; "busy" = while another thread counts in a pure-Python loop. Run it under
ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI (or AVX512_CORE) to see a capped CPU's forward.
Last line: untraced_ms=… traced_ms=… untraced_busy_ms=… traced_busy_ms=… precision=…
"""

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dogbreed import hardware, quantize
from dogbreed.model import load_artifact
from dogbreed.serving.predictor import INPUT_DTYPES, untraced, without_gil


def ms_per_image(model: Callable, batch: torch.Tensor, rounds: int, busy: bool) -> float:
    """Median ms per image over `rounds` forwards (after one warm-up), optionally beside a spinning thread."""
    stop = threading.Event()

    def spin() -> None:
        count = 0
        while not stop.is_set():
            count += 1

    spinner = threading.Thread(target=spin, daemon=True)
    with torch.inference_mode():
        model(batch)
        if busy:
            spinner.start()
        try:
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                model(batch)
                times.append((time.perf_counter() - started) / len(batch) * 1e3)
        finally:
            stop.set()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="an artifact `train` wrote")
    parser.add_argument("--precision", default="int8", choices=("fp32", "bf16", "int8"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    hardware.set_torch_threads(1)
    artifact = load_artifact(args.model_dir)
    size = artifact.preprocess.image_size
    if args.precision == "int8" and (refusal := quantize.int8_refusal(artifact)):
        raise SystemExit(f"int8: {refusal}")
    model = untraced(artifact, args.precision, "cpu")
    models = {"untraced": model, "traced": without_gil(model, args.precision, size)}
    batch = torch.randn(args.batch, 3, size, size).to(INPUT_DTYPES[args.precision])
    batch = batch.contiguous(memory_format=torch.channels_last)
    figures = {}
    for busy in (False, True):
        for name, model in models.items():
            figures[f"{name}{'_busy' if busy else ''}_ms"] = ms_per_image(model, batch, args.rounds, busy)
    print(" ".join(f"{k}={v:.1f}" for k, v in figures.items()) + f" precision={args.precision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
