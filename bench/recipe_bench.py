#!/usr/bin/env python3
"""Training-recipe benchmark (issue 12): the old recipe vs the new defaults, same data, several seeds, one run.

Both recipes train the same generated dataset (dogImages layout) from random init through the real training
code (dogbreed.train.main), the head on cached backbone features (augment=false, the tuning recipe; --augment
runs the backbone every epoch, ~10x slower), with the image's default hyperparameters except:
  old: lr=0.001 lr_schedule=none label_smoothing=0 select_by=last   (the old defaults: constant lr, last epoch)
  new: the defaults (lr=0.0003, cosine schedule with warm-up, label smoothing 0.1, best epoch by valid_loss)
(--old/--new KEY=VALUE change a recipe, e.g. --old lr=0.0003 to see what the lower lr alone buys.)
For each run it prints the delivered model's test accuracy (the `final` line) and the best epoch's validation
accuracy; the last line holds, per recipe, the mean and the worst delivered test accuracy over the seeds, and
the mean delivered test accuracy vs the mean best-epoch validation accuracy, e.g.
  old mean_test_acc=0.70 worst_test_acc=0.50 delivered_vs_best_valid=0.70/0.80 new mean_test_acc=...
  ... new_worst_vs_old_mean=+0.05
Target: the new recipe's worst seed is not below the old recipe's mean (new_worst_vs_old_mean >= 0).

Run from the repository root, a few minutes on 2 cores with the defaults:
  .venv/bin/python bench/recipe_bench.py
  .venv/bin/python bench/recipe_bench.py --seeds 1 2 3 4 5 --epochs 10
"""

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from statistics import fmean

from train_bench import make_job, run_trial

from local_test.make_sample_data import make_dataset

RECIPES = {
    "old": {"lr": "0.001", "lr_schedule": "none", "label_smoothing": "0", "patience": "0", "select_by": "last"},
    "new": {},
}


def hyperparameters(args: argparse.Namespace, recipe: str, seed: int) -> dict[str, str]:
    """What a new user sets for a quick run from random init; everything else is the image's default."""
    common = {
        "pretrained": "false",
        "epochs": str(args.epochs),
        "image_size": str(args.image_size),
        "num_workers": "0",
        "seed": str(seed),
        "augment": str(args.augment).lower(),
        "fine_tune": args.fine_tune,
    }
    overrides = dict(pair.split("=", 1) for pair in getattr(args, recipe))
    return {**common, **RECIPES[recipe], **overrides}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds (at least 3)")
    parser.add_argument("--epochs", type=int, default=10, help="the image's default")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=30, help="training images per class")
    parser.add_argument("--augment", action="store_true", help="augment=true: the backbone runs every epoch")
    parser.add_argument("--fine-tune", default="head", help="head (the default; cached features) or all")
    for recipe in RECIPES:
        parser.add_argument(
            f"--{recipe}", nargs="*", default=[], metavar="KEY=VALUE", help=f"change the {recipe} recipe"
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if len(args.seeds) < 3:
        raise SystemExit("recipe_bench: give at least 3 seeds")
    logging.disable(logging.INFO)  # the jobs' own log lines; warnings and errors still show
    results: dict[str, list[tuple[float, float]]] = {recipe: [] for recipe in RECIPES}
    with tempfile.TemporaryDirectory(prefix="recipe-bench-") as tmp:
        dataset = make_dataset(Path(tmp) / "dogImages", per_class=args.per_class, classes=args.classes)
        for seed in args.seeds:
            for recipe in RECIPES:
                job = make_job(Path(tmp) / f"{recipe}-{seed}", dataset, hyperparameters(args, recipe, seed))
                seconds, epochs, final = run_trial(job)
                best_valid = max(row["valid_acc"] for row in epochs)
                results[recipe].append((final["test_acc"], best_valid))
                valid = " ".join(f"{row['valid_acc']:.2f}" for row in epochs)
                print(
                    f"{recipe} seed={seed} epochs_run={len(epochs)} delivered_epoch={final['best_epoch']} "
                    f"test_acc={final['test_acc']:.3f} best_valid_acc={best_valid:.3f} seconds={seconds:.0f} "
                    f"valid_acc_per_epoch=[{valid}]",
                    flush=True,
                )
    summary = []
    for recipe, runs in results.items():
        tests, valids = [t for t, _ in runs], [v for _, v in runs]
        summary.append(
            f"{recipe} mean_test_acc={fmean(tests):.3f} worst_test_acc={min(tests):.3f} "
            f"delivered_vs_best_valid={fmean(tests):.3f}/{fmean(valids):.3f}"
        )
    margin = min(t for t, _ in results["new"]) - fmean(t for t, _ in results["old"])
    print(f"{' '.join(summary)} new_worst_vs_old_mean={margin:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
