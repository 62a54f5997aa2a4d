"""Helpers for the serving tests: small artifacts and a real server subprocess (bodies: serving_requests)."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import torch
from loopback import free_port

from dogbreed.model import HeadConfig, build_model, save_artifact
from dogbreed.presets import PreprocessConfig
from local_test.make_sample_data import BREEDS

REPO = Path(__file__).resolve().parents[2]
CLASS_NAMES = list(BREEDS[:4])
IMAGE_SIZE = 64  # small input keeps the random-init ResNet50 fast


def make_model(*, seed: int = 0, winner: int | None = None) -> torch.nn.Module:
    """Random-init ResNet50 with our head; winner (0-based) rigs the head so that class always wins."""
    torch.manual_seed(seed)
    model = build_model(HeadConfig(num_classes=len(CLASS_NAMES)))
    if winner is not None:
        last = model.fc[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(-5.0)
            last.bias[winner] = 5.0
    return model.eval()


def write_artifact(model_dir: Path, *, seed: int = 0, winner: int | None = None) -> Path:
    save_artifact(
        model_dir,
        make_model(seed=seed, winner=winner),
        class_names=CLASS_NAMES,
        head=HeadConfig(num_classes=len(CLASS_NAMES)),
        preprocess=PreprocessConfig(image_size=IMAGE_SIZE),
    )
    return model_dir


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    port: int
    log: Path

    def worker_pids(self) -> set[int]:
        """gunicorn's workers: the children of the model server, which `serve` runs beside nginx."""
        import psutil

        (master,) = (p for p in psutil.Process(self.process.pid).children() if "dogbreed.serve" in p.cmdline())
        return {child.pid for child in master.children()}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for_ping(server: Server, statuses=(200,), timeout: float = 60, body_has: bytes = b"") -> requests.Response:
    """/ping's first answer with one of these statuses (and body_has in its body: the workers', not nginx's 503)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.log_text()}")
        try:
            response = requests.get(f"{server.url}/ping", timeout=2)
            if response.status_code in statuses and body_has in response.content:
                return response
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"/ping never answered {statuses}:\n{server.log_text()}")


@contextmanager
def running_server(base_dir: Path, log: Path, **extra_env: str) -> Iterator[Server]:
    """The real launcher (container/bin/serve) on a free 127.0.0.1 port, stopped with SIGTERM."""
    port = free_port()
    env = {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(base_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "PYTHONPATH": os.pathsep.join([str(REPO / "container"), os.environ.get("PYTHONPATH", "")]),
        **extra_env,
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "container" / "bin" / "serve")], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    server = Server(process, f"http://127.0.0.1:{port}", port, log)
    try:
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
