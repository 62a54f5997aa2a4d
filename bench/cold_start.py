#!/usr/bin/env python3
"""Cold-start benchmark: `docker run IMAGE serve` → first /ping 200 (median of several runs), worker memory, image size.

Usage: .venv/bin/python bench/cold_start.py [--image dog-breed-classifier:latest] [--runs 5] [--model-dir DIR]
                                            [--env K=V ...]

Serves --model-dir (an artifact `train` wrote), or else a generated ResNet50 with 133 classes at 224 px
(the full-size artifact: load time depends on its size, not on its training). Each run starts a fresh
container with --network host on a free loopback port, polls /ping every 50 ms, sends 8 requests (one photo
each) and reads the largest worker's resident memory (VmRSS), then removes it.
Last line: cold_start_median_s=… cold_start_min_s=… cold_start_max_s=… worker_rss_mb=<median> image_size_gb=… runs=…
"""

import argparse
import io
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path


def full_size_artifact(root: Path) -> Path:
    from dogbreed.model import HeadConfig, build_model, save_artifact
    from dogbreed.presets import PreprocessConfig

    head = HeadConfig(num_classes=133)
    names = [f"{i:03d}.breed_{i}" for i in range(1, 134)]
    save_artifact(root / "model", build_model(head).eval(), class_names=names, head=head, preprocess=PreprocessConfig())
    return root / "model"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def one_start(image: str, model_dir: Path, env: dict[str, str], timeout: float = 120) -> tuple[float, float]:
    """Seconds from `docker run` to the first /ping 200 of a fresh container, and its worker's MB after 8 requests."""
    port, name = _free_port(), f"dogbreed-cold-{uuid.uuid4().hex[:8]}"
    env_args = [a for k, v in {**env, "SAGEMAKER_BIND_TO_PORT": str(port)}.items() for a in ("-e", f"{k}={v}")]
    command = ["docker", "run", "-d", "--rm", "--pull", "never", "--name", name, "--network", "host", *env_args,
               "-v", f"{model_dir.resolve()}:/opt/ml/model:ro", image, "serve"]  # fmt: skip
    started = time.monotonic()
    launched = subprocess.run(command, check=False, capture_output=True, text=True)
    if launched.returncode:
        raise SystemExit(f"docker run {image} failed: {launched.stderr.strip()} (is the engine up and the image "
                         "built? scripts/ensure_docker.sh, ./build_and_push.sh --no-push)")  # fmt: skip
    try:
        while not _ping(f"http://127.0.0.1:{port}"):
            if time.monotonic() - started > timeout:
                raise SystemExit(f"{name}: no /ping 200 within {timeout} s")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        photo = _photo()
        for _ in range(8):
            _predict(f"http://127.0.0.1:{port}", photo)
        return seconds, _worker_rss_mb(name)
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def _photo() -> bytes:
    """A 500x375 JPEG, the size of a typical request photo."""
    from PIL import Image

    body = io.BytesIO()
    Image.new("RGB", (500, 375), (120, 90, 60)).save(body, "JPEG")
    return body.getvalue()


def _predict(url: str, photo: bytes) -> None:
    request = urllib.request.Request(f"{url}/invocations", photo, {"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def _worker_rss_mb(container: str) -> float:
    """The largest VmRSS among the container's processes: a model worker (the gunicorn master holds no model)."""
    script = "cat /proc/[0-9]*/status 2>/dev/null | grep VmRSS"
    lines = subprocess.run(["docker", "exec", container, "sh", "-c", script],
                           check=True, capture_output=True, text=True).stdout.splitlines()  # fmt: skip
    return max(int(line.split()[1]) for line in lines) / 1024


def image_size_gb(image: str) -> float:
    size = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image],
                          check=True, capture_output=True, text=True).stdout  # fmt: skip
    return int(size) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="dog-breed-classifier:latest")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model-dir", type=Path, help="artifact to serve (default: a generated full-size one)")
    parser.add_argument("--env", nargs="*", default=[], metavar="K=V", help="extra env for the container")
    args = parser.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.env)
    with tempfile.TemporaryDirectory(prefix="cold_start_") as tmp:
        model_dir = args.model_dir or full_size_artifact(Path(tmp))
        times, memory = [], []
        for run in range(1, args.runs + 1):
            seconds, rss_mb = one_start(args.image, model_dir, env)
            times.append(seconds)
            memory.append(rss_mb)
            print(f"run {run}: /ping 200 after {seconds:.2f} s; worker {rss_mb:.0f} MB after 8 requests")
    figures = {"cold_start_median_s": statistics.median(times), "cold_start_min_s": min(times),
               "cold_start_max_s": max(times), "worker_rss_mb": statistics.median(memory),
               "image_size_gb": image_size_gb(args.image)}  # fmt: skip
    print(" ".join(f"{k}={v:.2f}" for k, v in figures.items()) + f" runs={len(times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
