"""Helpers for the serving tests: small artifacts, generated request bodies, a real server subprocess."""

import base64
import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
import torch
from PIL import Image

from dogbreed.model import HeadConfig, build_model, save_artifact
from dogbreed.presets import PreprocessConfig
from local_test.make_sample_data import BREEDS, make_image

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


def photo(index: int = 0, size: tuple[int, int] = (120, 90), seed: int = 0) -> Image.Image:
    """A synthetic dog-breed-dataset photo; make_image knows six class looks."""
    return make_image(index % 6, np.random.default_rng(seed), size)


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def jpeg(index: int = 0, seed: int = 0, size: tuple[int, int] = (120, 90)) -> bytes:
    return encode(photo(index, size, seed), "JPEG", quality=90)


def png(index: int = 0, seed: int = 0) -> bytes:
    return encode(photo(index, seed=seed), "PNG")


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)  # tests build hostile bodies too
    return buffer.getvalue()


def npy_header(*, shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def instances(*images: bytes) -> bytes:
    return json.dumps({"instances": [{"b64": b64(i)} for i in images]}).encode()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: refusable before a single pixel is allocated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def padded_jpeg(total_bytes: int) -> bytes:
    """A valid JPEG followed by filler up to total_bytes (decoders stop at the end-of-image marker)."""
    data = jpeg(size=(500, 375))
    return data + b"\0" * (total_bytes - len(data))


MIB = 1024 * 1024


def bad_requests() -> list[tuple[str, dict, bytes, int]]:
    """(name, headers, body, expected status): every error class of /invocations."""
    good, pickled = jpeg(), npy(np.array([object()], dtype=object))
    huge_npy = npy_header(shape=(99_999, 99_999, 3)) + b"\0" * 64
    jpg, js, xnpy = (
        {"Content-Type": "image/jpeg"},
        {"Content-Type": "application/json"},
        {"Content-Type": "application/x-npy"},
    )
    return [
        ("content-type text/csv", {"Content-Type": "text/csv"}, b"1,2,3", 415),
        ("content-type missing", {}, good, 415),
        ("content-type form (curl default)", {"Content-Type": "application/x-www-form-urlencoded"}, good, 415),
        ("accept text/csv", {**jpg, "Accept": "text/csv"}, good, 406),
        ("accept application/xml", {**jpg, "Accept": "application/xml, text/html;q=0.5"}, good, 406),
        ("empty jpeg body", jpg, b"", 400),
        ("empty json body", js, b"", 400),
        ("garbage as jpeg", jpg, b"this is not an image at all", 400),
        ("truncated jpeg", jpg, good[: len(good) // 2], 400),
        ("truncated png", {"Content-Type": "image/png"}, png()[:200], 400),
        ("corrupt jpeg data", jpg, good[:300] + bytes(range(256)) * 4, 400),
        ("malformed json", js, b'{"instances": [', 400),
        ("json not utf-8", js, b'{"image": "\xff\xfe"}', 400),
        ("json nested too deep", js, b"[" * 100_000 + b"]" * 100_000, 400),
        ("json unknown shape", js, b'{"pictures": []}', 400),
        ("json instances not a list", js, b'{"instances": 7}', 400),
        ("json instance not a string", js, b'{"instances": [{"b64": 7}]}', 400),
        ("json bad base64", js, b'{"image": "not base64!!"}', 400),
        ("json base64 of non-image", js, json.dumps({"image": b64(b"hello world")}).encode(), 400),
        ("json no images", js, b'{"instances": []}', 400),
        ("json too many images", js, json.dumps({"images": [b64(good)] * 257}).encode(), 413),
        ("npy float32", xnpy, npy(np.zeros((8, 8, 3), np.float32)), 400),
        ("npy HxW", xnpy, npy(np.zeros((8, 8), np.uint8)), 400),
        ("npy HxWx4", xnpy, npy(np.zeros((8, 8, 4), np.uint8)), 400),
        ("npy pickled object", xnpy, pickled, 400),
        ("npy garbage", xnpy, b"\x93NUMPY garbage", 400),
        ("npy truncated", xnpy, npy(np.zeros((8, 8, 3), np.uint8))[:-10], 400),
        ("npy header claims 30 GB", xnpy, huge_npy, 400),
        ("png decompression bomb", {"Content-Type": "image/png"}, png_header_only(30_000, 30_000), 413),
        ("png over pixel limit", {"Content-Type": "image/png"}, png_header_only(8_000, 6_000), 413),
        ("custom attribute top_k=abc", {**jpg, "X-Amzn-SageMaker-Custom-Attributes": "top_k=abc"}, good, 400),
        ("custom attribute top_k=0", {**jpg, "X-Amzn-SageMaker-Custom-Attributes": "top_k=0"}, good, 400),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    port: int
    log: Path

    def worker_pids(self) -> set[int]:
        import psutil

        return {child.pid for child in psutil.Process(self.process.pid).children()}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for_ping(server: Server, statuses=(200,), timeout: float = 60) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.log_text()}")
        try:
            response = requests.get(f"{server.url}/ping", timeout=2)
            if response.status_code in statuses:
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
