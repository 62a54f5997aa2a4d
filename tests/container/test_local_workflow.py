"""The documented local workflow against the real image: local_test scripts and docker-compose."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import ROOT, run, wait_for_ping
from loopback import free_port

TEST_DIR = ROOT / "local_test" / "test_dir"
SAMPLE = ROOT / "local_test" / "sample_dog.jpg"
SAMPLE_CLASS = 0  # sample_dog.jpg is drawn like class 001.Affenpinscher


def assert_breed_prediction(body: str) -> None:
    probabilities = json.loads(body)
    assert len(probabilities) == 1
    assert abs(sum(probabilities[0]) - 1) < 1e-3
    assert probabilities[0].index(max(probabilities[0])) == SAMPLE_CLASS


@pytest.fixture(scope="module")
def local_test_trained(image: str) -> Path:
    """local_test/train_local.sh run from scratch: generates the sample data, trains, writes model/."""
    shutil.rmtree(TEST_DIR / "input" / "data", ignore_errors=True)
    run([str(ROOT / "local_test" / "train_local.sh"), image])
    return TEST_DIR / "model"


def test_train_local_writes_the_model(local_test_trained: Path) -> None:
    config = json.loads((local_test_trained / "model_config.json").read_text())
    assert config["class_names"][0] == "001.Affenpinscher"
    assert (local_test_trained / "model.pt").stat().st_size > 1_000_000


def test_serve_local_then_predict_sh_classifies_the_sample(image: str, local_test_trained: Path) -> None:
    port = str(free_port())
    env = {**os.environ, "PORT": port}
    server = subprocess.Popen([str(ROOT / "local_test" / "serve_local.sh"), image], env=env)
    try:
        wait_for_ping(f"http://127.0.0.1:{port}", timeout=60)
        result = run([str(ROOT / "local_test" / "predict.sh")], env=env)
        assert_breed_prediction(result.stdout)
    finally:
        server.terminate()
        server.wait(timeout=40)


def test_compose_trains_then_serves_on_loopback(image: str, local_test_trained: Path) -> None:
    port = str(free_port())
    env = {**os.environ, "PORT": port, "IMAGE": image}
    compose = ["docker-compose", "--project-name", f"dogbreed{port}", "-f", str(ROOT / "docker-compose.yml")]
    for output in ("model", "output", "checkpoints"):  # a fresh job, not a resume of the previous test's
        shutil.rmtree(TEST_DIR / output, ignore_errors=True)
    try:
        run([*compose, "run", "--rm", "train"], env=env)
        run([*compose, "up", "-d", "serve"], env=env)
        wait_for_ping(f"http://127.0.0.1:{port}", timeout=60)
        with SAMPLE.open("rb") as body:
            response = requests.post(
                f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "image/jpeg"}, timeout=30
            )
        assert response.status_code == 200, response.text
        assert_breed_prediction(response.text)
    finally:
        run([*compose, "down", "--timeout", "30"], env=env, check=False)
