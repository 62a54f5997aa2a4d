"""An image that passes the scan (PIL verify) but fails to decode during training is skipped and counted, not fatal;
a class none of whose training images decodes fails the job, naming it."""

import re
from pathlib import Path

import pytest

from dogbreed.data import image_problem


def truncate(path: Path) -> Path:
    """Keep the JPEG header and half of the scan data: verify() passes, decoding fails."""
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    return path


@pytest.mark.parametrize(
    ("cache_features", "batch_size", "num_workers"),
    [("true", "8", "0"), ("false", "1", "2")],
    ids=["cached-features", "every-epoch-whole-batch-in-workers"],
)
def test_undecodable_images_are_skipped_and_counted(sm_tree, run_train, cache_features, batch_size, num_workers):
    hyperparameters = {"epochs": "2", "fine_tune": "head", "augment": "false", "cache_features": cache_features}
    base = sm_tree({**hyperparameters, "batch_size": batch_size, "num_workers": num_workers}, per_class=6)
    images = base / "input" / "data" / "training"
    broken = [truncate(sorted((images / split).rglob("*.jpg"))[0]) for split in ("train", "valid")]
    assert not any(image_problem(path) for path in broken)  # the scan-time check lets them through

    result = run_train(base)

    assert result.returncode == 0, result.stdout + result.stderr
    for path in broken:  # once per file, although the plain loop reads it every epoch (in worker processes)
        assert result.stdout.count(f"skipped undecodable image {path} (") == 1, result.stdout
    assert result.stdout.count("; 1 skipped in its split so far") == 2
    assert [int(e) for e in re.findall(r"\bepoch=(\d+) ", result.stdout)] == [1, 2]
    assert (base / "model" / "model.pt").is_file()


@pytest.mark.parametrize(
    ("cache_features", "num_workers"), [("true", "0"), ("false", "2")], ids=["cached-features", "images-in-workers"]
)
def test_a_class_of_only_undecodable_training_images_fails_the_job(sm_tree, run_train, cache_features, num_workers):
    hyperparameters = {"epochs": "2", "fine_tune": "head", "augment": "false", "cache_features": cache_features}
    base = sm_tree({**hyperparameters, "num_workers": num_workers}, per_class=4)
    for path in (base / "input" / "data" / "training" / "train").glob("002.*/*.jpg"):
        truncate(path)

    result = run_train(base)

    assert result.returncode == 1, result.stdout + result.stderr
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith("1 class(es) have no training image that decodes"), failure
    assert ": 002.Afghan_hound; replace their images with readable ones" in failure
    assert not (base / "model" / "model.pt").exists()
