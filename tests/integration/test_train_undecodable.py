"""An image that passes the scan (PIL verify) but fails to decode during training is skipped and counted, not fatal;
a class none of whose training images decodes fails the job, naming it."""

import json
import re
from pathlib import Path

import pytest

from dogbreed import train
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


@pytest.mark.parametrize("split", ["valid", "test"])
@pytest.mark.parametrize("augment", ["false", "true"], ids=["cached-features", "images"])
def test_a_split_of_only_undecodable_images_fails_the_job_naming_it(sm_tree, caplog, split, augment):
    """Was: valid_loss=0.0000 (a tuning job's best trial) or test_loss=0.0000 from no image at all, exit 0; with
    cached features an internal error (torch.cat of nothing)."""
    base = sm_tree({"epochs": "1", "fine_tune": "head", "augment": augment, "int8": "false"}, per_class=4)
    for path in (base / "input" / "data" / "training" / split).rglob("*.jpg"):
        truncate(path)

    assert train.main({"SAGEMAKER_BASE_DIR": str(base)}) == train.EXIT_USER_ERROR

    failure = (base / "output" / "failure").read_text()
    assert failure.startswith(f"no image of the {split} split could be decoded (every one was skipped"), failure
    assert "replace its images with readable ones" in failure
    assert f"{split}_loss=0.0000" not in caplog.text
    if split == "test" and augment == "true":  # met when the best epoch is tested: delivered untested, as after
        metrics = json.loads((base / "model" / "model_config.json").read_text())["metrics"]  # any later failure
        assert "failed" in metrics and "test_loss" not in metrics
    else:  # met before the first epoch ended (validation, or the feature pass)
        assert "final " not in caplog.text and not (base / "model" / "model.pt").exists()
