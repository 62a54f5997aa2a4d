#!/usr/bin/env python3
"""Generate a small, learnable dataset in the dogImages layout (train/ valid/ test/, class folders).

Classes are named like the real 133 breeds and differ visibly (dominant colour and stripe
direction), so a few epochs from random init reach high accuracy. Deterministic for a seed.
Usage: make_sample_data.py OUT_DIR [--per-class N] [--classes K] [--size WxH] [--seed S]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BREEDS = (
    "001.Affenpinscher",
    "002.Afghan_hound",
    "003.Airedale_terrier",
    "004.Akita",
    "005.Alaskan_malamute",
    "006.American_eskimo_dog",
)
COLOURS = ((200, 40, 40), (40, 170, 60), (50, 70, 210), (220, 200, 40), (160, 60, 190), (30, 180, 190))
SPLITS = {"train": 1.0, "valid": 0.34, "test": 0.34}


def make_image(class_index: int, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A noisy image of the class colour with stripes whose direction also encodes the class."""
    width, height = size
    base = np.array(COLOURS[class_index], dtype=np.float32)
    pixels = base + rng.normal(0, 25, (height, width, 3))
    coords = np.arange(width if class_index % 2 else height)
    stripes = (np.sin(coords / 3.0 + rng.uniform(0, 6)) > 0).astype(np.float32) * 50
    pixels += stripes[None, :, None] if class_index % 2 else stripes[:, None, None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_dataset(
    root: Path, *, per_class: int = 30, classes: int = 4, size: tuple[int, int] = (96, 72), seed: int = 0
) -> Path:
    """Write root/{train,valid,test}/<class>/*.jpg; returns root."""
    if not 1 <= classes <= len(BREEDS):
        raise ValueError(f"classes must be 1..{len(BREEDS)}")
    rng = np.random.default_rng(seed)
    for split, share in SPLITS.items():
        for index, breed in enumerate(BREEDS[:classes]):
            folder = root / split / breed
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(max(1, round(per_class * share))):
                make_image(index, rng, size).save(folder / f"{breed.split('.')[1]}_{n:04d}.jpg", quality=90)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per-class", type=int, default=30, help="training images per class (default 30)")
    parser.add_argument("--classes", type=int, default=4, help=f"number of classes, 1..{len(BREEDS)} (default 4)")
    parser.add_argument("--size", default="96x72", help="image size WxH (default 96x72)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        make_dataset(args.out_dir, per_class=args.per_class, classes=args.classes, size=(width, height), seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote sample dataset to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
