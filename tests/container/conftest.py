"""Fixtures that build the real image once per session and run it for train and serve."""

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from loopback import free_port

from local_test.make_sample_data import make_dataset

ROOT = Path(__file__).resolve().parents[2]

# Small and quick on two CPU cores, still learnable from random init.
QUICK_HYPERPARAMETERS = {
    "epochs": "5",
    "batch_size": "16",
    "lr": "0.001",
    "image_size": "64",
    "pretrained": "false",
    "fine_tune": "all",
    "augment": "false",
}


def run(cmd: list[str], *, timeout: float = 900, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, capturing output; on failure show it in the assertion message."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def image() -> str:
    """The image under test: built by build_and_push.sh --no-push, or $DOGBREED_IMAGE as given."""
    if given := os.environ.get("DOGBREED_IMAGE"):
        return given
    result = run([str(ROOT / "build_and_push.sh"), "--no-push"], timeout=3000)
    return result.stdout.strip().splitlines()[-1]


def make_opt_ml(
    root: Path,
    hyperparameters: dict[str, str],
    data: Path | None = None,
    *,
    current_host: str = "algo-1",
    hosts: tuple[str, ...] = ("algo-1",),
) -> Path:
    """An /opt/ml tree shaped as SageMaker writes it, with one `training` channel."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text(json.dumps({"training": {"TrainingInputMode": "File"}}))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": current_host, "hosts": list(hosts), "network_interface_name": "eth0"})
    )
    make_dataset(data or root / "input" / "data" / "training")
    return root


def docker_train(image: str, opt_ml: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(
        ["docker", "run", "--rm", "--network", "host", *extra, "-v", f"{opt_ml}:/opt/ml", image, "train"], check=check
    )


@pytest.fixture(scope="session")
def trained_opt_ml(image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An /opt/ml tree on which the real image has trained a model (model/ filled)."""
    opt_ml = make_opt_ml(tmp_path_factory.mktemp("opt_ml"), QUICK_HYPERPARAMETERS)
    docker_train(image, opt_ml)
    return opt_ml


def wait_for_ping(url: str, timeout: float = 60) -> float:
    """Poll /ping until 200; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{url}/ping not 200 within {timeout} s")


@contextlib.contextmanager
def serving(
    image: str, model_dir: Path, env: dict[str, str] | None = None, docker_args: tuple[str, ...] = ()
) -> Iterator[tuple[str, str]]:
    """Run `IMAGE serve` on a free loopback port; yields (base URL, container name)."""
    port, name = free_port(), f"dogbreed-test-{uuid.uuid4().hex[:8]}"
    env_args = [
        arg for k, v in {"SAGEMAKER_BIND_TO_PORT": str(port), **(env or {})}.items() for arg in ("-e", f"{k}={v}")
    ]
    run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            *docker_args,
            *env_args,
            "-v",
            f"{model_dir}:/opt/ml/model:ro",
            image,
            "serve",
        ]
    )
    try:
        yield f"http://127.0.0.1:{port}", name
    finally:
        logs = run(["docker", "logs", name], check=False)
        print(f"--- logs of {name}\n{logs.stdout}{logs.stderr}")
        run(["docker", "rm", "-f", name], check=False)
