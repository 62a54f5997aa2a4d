"""`orchestrate.py all --local`: the real image trained, reported on, deployed, queried and removed (SDK local mode)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QUICK_HYPERPARAMETERS, ROOT, run

from local_test.make_sample_data import make_dataset
from orchestration.sdk import removing_new_containers

pytestmark = pytest.mark.container
RULES = ("vanishing_gradient", "overfit", "overtraining", "poor_weight_initialization", "loss_not_decreasing")


def test_all_local_trains_reports_deploys_predicts_and_cleans_up(image: str, tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "dogImages")
    hyperparameters = [arg for key, value in QUICK_HYPERPARAMETERS.items() for arg in ("--hp", f"{key}={value}")]
    command = [sys.executable, str(ROOT / "orchestrate.py"), "all", "--local", "--image-uri", image]
    result = subprocess.run(
        [*command, "--data-s3", str(data), "--count", "4", *hyperparameters],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},  # no account needed
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout

    assert "--local: tuning skipped" in out
    for rule in RULES:
        assert re.search(rf"^{rule}\s+(ok|fired)\s", out, re.MULTILINE), f"no verdict for {rule}"
    (report,) = (tmp_path / "orchestrate-runs").glob("dogbreed-train-*/report/report.md")
    assert (report.parent / "loss.png").read_bytes().startswith(b"\x89PNG")

    breeds = sorted(p.name for p in (data / "test").iterdir())
    rows = re.findall(r"^\S+\.jpg\s+(\S+)\s+(\S+)\s+([01]\.\d{3})$", out, re.MULTILINE)
    assert [truth for truth, _, _ in rows] == breeds
    assert {predicted for _, predicted, _ in rows} <= set(breeds)
    assert re.search(r"^\d/4 correct$", out, re.MULTILINE)
    assert re.search(r"^deleted: endpoint dogbreed-ep-\S+, endpoint config \S+, model \S+$", out, re.MULTILINE)

    # Local mode's containers (named in "Attaching to NAME") and working trees must be gone; others may share the image.
    ours = set(re.findall(r"^Attaching to (\S+)$", out, re.MULTILINE))
    assert len(ours) == 2  # the training job and the endpoint
    existing = set(run(["docker", "ps", "--all", "--format", "{{.Names}}"]).stdout.split())
    assert ours.isdisjoint(existing)
    assert not list((tmp_path / "orchestrate-runs").glob("sdk-local-*"))

    # Batch transform with the model `all` trained (state.json remembers the job): one labelled row per image.
    folder = tmp_path / "to-label"  # local mode reads the files directly in the folder
    folder.mkdir()
    for path in (data / "test").glob("*/*.jpg"):
        (folder / f"{path.parent.name}-{path.name}").write_bytes(path.read_bytes())
    transformed = subprocess.run(
        [sys.executable, str(ROOT / "orchestrate.py"), "transform", "--local", "--image-uri", image,
         "--transform-input", str(folder)],
        cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert transformed.returncode == 0, transformed.stdout[-3000:] + transformed.stderr[-3000:]
    images = sorted(p.name for p in folder.glob("*.jpg"))
    labelled = re.findall(r"^(\S+\.jpg)\s+(.+?)\s+([01]\.\d{3})$", transformed.stdout, re.MULTILINE)
    assert [image for image, _, _ in labelled] == images
    (table,) = (tmp_path / "orchestrate-runs").glob("dogbreed-tf-*/predictions.csv")
    assert len(table.read_text().splitlines()) == len(images) + 1
    assert not list((tmp_path / "orchestrate-runs").glob("sdk-local-*"))


def test_only_the_containers_created_inside_the_block_are_removed(image: str) -> None:
    created: list[str] = []

    def docker(*args: str) -> str:
        created.append(run(["docker", *args]).stdout.strip())
        return created[-1]

    try:
        earlier = docker("create", "--network", "host", image, "train")
        running = docker("run", "--detach", "--network", "host", "--entrypoint", "sleep", image, "600")
        with removing_new_containers(image):
            inside = docker("create", "--network", "host", image, "train")
            run(["docker", "kill", running])  # stops inside the block, but was not created there
        remaining = run(["docker", "ps", "--all", "--quiet", "--no-trunc"]).stdout.split()
        assert earlier in remaining
        assert running in remaining
        assert inside not in remaining
    finally:
        run(["docker", "rm", "--force", *created], check=False)
