#!/usr/bin/env python3
"""Serving benchmark: the real server vs the model's raw forward limit vs a naive server, in one run.

Usage: .venv/bin/python bench/serve_bench.py [--images 256] [--seconds 10] [--concurrency 1,4,16]
                                             [--model-dir DIR] [--photos DIR] [--server-env K=V ...]

On the same ResNet50 (133 classes, 224 px; ImageNet backbone when its weights are cached, else random
init) and the same JPEG photos (~500x375; real photos shipped with installed packages, re-cropped, or
your own with --photos), it measures:
  limit      best in-process forward throughput at batch 16 (no HTTP, no decode) of eager fp32 and
             every precision the server can run here (prepared fp32, bf16 where the CPU lists it, the
             artifact's int8 when its gate passed), each also run as one single-thread stream per CPU on
             a share of the batch (as the server's streams). The two fastest are
             measured again just before and just after the top concurrency level (server idle), and the
             best of those is the limit: this shared machine's speed drifts by 10-20 % within minutes
  serve      the real launcher (container/bin/serve, as in the image) driven by concurrent keep-alive
             clients at each concurrency: throughput and p50/p95/p99 latency
  naive      bench/naive_server.py (Flask + Pillow + torchvision + fp32 eager, batch 1) on gunicorn
  single     decode + preprocess of one photo and a batch-1 forward on the server's path, in process, just
             before and just after concurrency 1 (the faster of the two), for p50_c1_vs_decode_forward
  agreement  the server's answers for every photo vs exact fp32 on the same preprocessing
and prints, last, one line of ratios:
  serve_vs_limit=… serve_vs_naive=… p50_c1_ms=… p50_c1_vs_decode_forward=… top1_agreement_vs_fp32=… max_prob_diff=…
  … precision=<what the server chose> (decode + forward are timed in that precision)
Runs unchanged under ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI (an ml.m5.large's oneDNN): children inherit it.
The benchmark re-runs itself under the server's heap allocator (tcmalloc where installed, DOGBREED_MALLOC), so
the limit is measured as the server computes; the naive server keeps the C library's malloc.
Clients run on the same machine as the server, so they take some of its CPU: the ratios are conservative.
"""

import argparse
import concurrent.futures
import http.client
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dogbreed import hardware, quantize
from dogbreed.model import HeadConfig, build_model, cached_imagenet_weights_path, load_backbone, save_artifact
from dogbreed.presets import PreprocessConfig
from dogbreed.serving import codecs
from dogbreed.serving.predictor import INPUT_DTYPES, Predictor, PredictorConfig, prepare
from dogbreed.sm_env import DEFAULT_MAX_BATCH_SIZE, ServingEnv

REPO = Path(__file__).resolve().parents[1]  # the server's files and bench/naive_server.py, run as child processes

NUM_CLASSES = 133
BATCH = DEFAULT_MAX_BATCH_SIZE  # the limit is probed at the server's default batch size
PHOTO_SIZE = (500, 375)
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "brick.png",
                  "grass.png", "gravel.png", "camera.png")  # fmt: skip


# ------------------------------------------------------------------------------------------ inputs


def real_photo_sources(photos_dir: Path | None) -> list[Image.Image]:
    """Real photographs: --photos, else those shipped inside installed packages (matplotlib, scikit-image)."""
    if photos_dir:
        paths = sorted(p for p in photos_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    else:
        import matplotlib

        paths = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
        try:
            import skimage

            data = Path(skimage.__file__).parent / "data"
            paths += [data / n for n in SKIMAGE_PHOTOS]
        except ImportError:
            pass
    return [Image.open(p).convert("RGB") for p in paths if p.is_file()]


def make_photos(count: int, sources: list[Image.Image], seed: int = 0) -> list[bytes]:
    """count JPEGs of ~500x375: random crops, flips and exposure of the sources, JPEG quality 80-95."""
    rng = np.random.default_rng(seed)
    if not sources:
        raise SystemExit("no real photos found: pass --photos DIR")
    photos = []
    for _ in range(count):
        source = sources[rng.integers(len(sources))]
        width, height = source.size
        scale = rng.uniform(0.55, 1.0)
        crop_w, crop_h = int(min(width, height * 4 / 3) * scale), int(min(height, width * 3 / 4) * scale)
        left, top = rng.integers(0, width - crop_w + 1), rng.integers(0, height - crop_h + 1)
        image = source.crop((left, top, left + crop_w, top + crop_h)).resize(PHOTO_SIZE, Image.BICUBIC)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        gain = rng.uniform(0.8, 1.2)
        image = Image.eval(image, lambda v, g=gain: min(255, int(v * g)))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(rng.integers(80, 96)))
        photos.append(buffer.getvalue())
    return photos


def make_model_dir(root: Path, photos: list[bytes], seed: int = 0) -> tuple[Path, str]:
    """A stand-in for a trained model whose answers depend on the photo (else agreement means nothing):
    ImageNet backbone when cached, else random init with BatchNorm statistics recalibrated on the photos;
    the random head is scaled so logits spread like a confident classifier's (std 4)."""
    torch.manual_seed(seed)
    model = build_model(HeadConfig(num_classes=NUM_CLASSES))
    weights = cached_imagenet_weights_path()
    preprocess = PreprocessConfig()
    batch = _photo_batch(photos[:64], preprocess)
    if weights.is_file():
        load_backbone(model, weights)
        backbone = "ImageNet backbone, random head"
    else:
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            for chunk in batch.split(16):
                model(chunk)
        backbone = "random init, BatchNorm recalibrated on the photos, random head"
    model.eval()
    with torch.no_grad():
        spread = model(batch).std().item()
        model.fc[-1].weight.mul_(4 / spread)
        model.fc[-1].bias.mul_(4 / spread)
    names = [f"{i:03d}.breed_{i}" for i in range(1, NUM_CLASSES + 1)]
    save_artifact(root / "model", model, class_names=names, head=HeadConfig(num_classes=NUM_CLASSES),
                  preprocess=preprocess)  # fmt: skip
    add_int8(root / "model", model, batch)
    return root / "model", backbone


def add_int8(model_dir: Path, model: torch.nn.Module, batch: torch.Tensor) -> None:
    """The stand-in's int8 variant as `train` makes one, gated on the photos against fp32's own answers
    (no labels here: accuracy = agreement); an untrained model's near-ties may fail the gate."""
    int8 = quantize.quantize(model, batch.split(16))
    with torch.inference_mode():
        labels = model(batch).argmax(1)
    gate = quantize.compare(model, int8, list(zip(batch.split(16), labels.split(16), strict=True)))
    quantize.save_int8(model_dir, int8 if gate["passed"] else None, gate)


def _photo_batch(photos: list[bytes], config: PreprocessConfig) -> torch.Tensor:
    from dogbreed.presets import ClassificationPresetEval

    transform = ClassificationPresetEval(config=config)
    return torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in photos])


# ------------------------------------------------------------------------------ in-process figures


def throughput(fn, batch: torch.Tensor, seconds: float) -> float:
    """Images per second of fn on batch, after two warm-up calls, over about `seconds`."""
    fn(batch)
    fn(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


class SingleThreadStreams:
    """One forward per CPU at a time, each on its share of the batch with one compute thread, as the
    server's streams run under load: on 2 cores ~20 % above one forward using both threads."""

    def __init__(self, model: torch.nn.Module, streams: int):
        self.model, self.streams = model, streams
        self.pool = concurrent.futures.ThreadPoolExecutor(streams)

    def __call__(self, batch: torch.Tensor) -> list[torch.Tensor]:
        with hardware.torch_threads(1):
            return list(self.pool.map(self._forward, batch.chunk(self.streams)))

    @torch.inference_mode()  # thread-local: entered in each stream's thread
    def _forward(self, part: torch.Tensor) -> torch.Tensor:
        return self.model(part)


def limit_models(model_dir: Path, batch_size: int) -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    """The bare model and a ready input of batch_size, no HTTP, no decode: eager fp32, each precision the
    server can prepare (prepare_for_inference) on this machine, and the last of those as concurrent
    single-thread streams."""
    from dogbreed.model import load_artifact

    cpus = hardware.usable_cpus()
    hardware.set_torch_threads(cpus)
    artifact = load_artifact(model_dir)
    x = torch.randn(batch_size, 3, artifact.preprocess.image_size, artifact.preprocess.image_size)
    models = {"eager_fp32": (artifact.model.eval(), x)}
    refusal = quantize.int8_refusal(artifact)
    host = hardware.describe()
    for precision in hardware.serving_candidates("auto", device="cpu", host=host, int8_refusal=refusal):
        served = prepare(artifact, precision, "cpu")
        batch = x.to(INPUT_DTYPES[precision]).contiguous(memory_format=torch.channels_last)
        models[f"served_{precision}"] = (served, batch)
        if cpus > 1:
            models[f"served_{precision}_{cpus}x1thread"] = (SingleThreadStreams(served, cpus), batch)
    return models


@torch.inference_mode()
def forward_rate(model: torch.nn.Module, batch: torch.Tensor, seconds: float = 4) -> float:
    return throughput(model, batch, seconds)


@contextmanager
def single_probe(model_dir: Path, photos: list[bytes], precision: str) -> Iterator[Callable[[], tuple[float, float]]]:
    """A probe of the median decode+preprocess of one photo and the median batch-1 forward, on the server's own
    path, in this process: called beside the c1 run, as the limit is beside the top level (the machine drifts)."""
    predictor = Predictor.load(model_dir, PredictorConfig(precision=precision, torch_threads=hardware.usable_cpus()))
    limits = codecs.DecodeLimits(max_pixels=40_000_000)

    def probe() -> tuple[float, float]:
        decode = []
        for body in photos[:64]:
            started = time.perf_counter()
            tensor = predictor.preprocess([codecs.open_image(body, limits)])
            decode.append(time.perf_counter() - started)
        forward = []
        for _ in range(20):
            started = time.perf_counter()
            predictor.forward(tensor)
            forward.append(time.perf_counter() - started)
        return statistics.median(decode) * 1e3, statistics.median(forward) * 1e3

    try:
        yield probe
    finally:
        predictor.close()


def fp32_reference(model_dir: Path, photos: list[bytes]) -> np.ndarray:
    """Exact fp32 eager on training's eval preprocessing (full JPEG decode, no draft)."""
    predictor = Predictor.load(model_dir, PredictorConfig(precision="fp32", jpeg_draft=False))
    limits = codecs.DecodeLimits(max_pixels=40_000_000)
    try:
        chunks = [photos[i : i + 16] for i in range(0, len(photos), 16)]
        return np.concatenate([predictor.predict([codecs.open_image(b, limits) for b in chunk]) for chunk in chunks])
    finally:
        predictor.close()


# ------------------------------------------------------------------------------------------ HTTP


@contextmanager
def server(command: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not _ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not come up; log:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(60)


def _ping(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except OSError:
        return False


def _client(port, photos, offset, stop_at, latencies):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    index = offset
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        conn.request("POST", "/invocations", photos[index % len(photos)], {"Content-Type": "image/jpeg"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        latencies.append(time.perf_counter() - started)
        index += 1
    conn.close()


def drive(port: int, photos: list[bytes], concurrency: int, seconds: float) -> dict:
    """Concurrent keep-alive clients for `seconds` (after 2 s of warm-up): throughput and latency percentiles."""
    for measured in (False, True):
        latencies: list[float] = []
        started = time.perf_counter()
        stop_at = started + (seconds if measured else 2.0)
        threads = [
            threading.Thread(target=_client, args=(port, photos, i * len(photos) // concurrency, stop_at, latencies))
            for i in range(concurrency)
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    p50, p95, p99 = np.percentile(np.asarray(latencies) * 1e3, [50, 95, 99])
    return {"concurrency": concurrency, "img_s": len(latencies) / elapsed, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99}


def all_answers(port: int, photos: list[bytes]) -> np.ndarray:
    answers: dict[int, bytes] = {}
    for i, body in enumerate(photos):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
        answers[i] = conn.getresponse().read()
        conn.close()
    return np.asarray([json.loads(answers[i])[0] for i in range(len(photos))])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_runs(base: Path, photos, levels, seconds, extra_env, *, probe_limit) -> tuple[list, list, list, np.ndarray]:
    """The real server at each concurrency level; the limit is probed (in this process, server idle) right before
    and right after the highest level, decode + single forward right before and after the lowest, so each ratio
    compares figures of the same machine state. Returns the runs, the limits, the (decode, forward) ms pairs and
    the server's answers for every photo."""
    port = _free_port()
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
           "PYTHONPATH": str(REPO / "container"), **extra_env}  # fmt: skip
    with server([sys.executable, str(REPO / "container" / "bin" / "serve")], env, port, base / "serve.log"):
        with single_probe(base / "model", photos, served_choice(base / "serve.log")[0]) as probe_single:
            singles = [probe_single()]
            runs = [drive(port, photos, levels[0], seconds)]
            singles.append(probe_single())
        runs += [drive(port, photos, c, seconds) for c in levels[1:-1]]
        limits = [probe_limit()]
        runs.append(drive(port, photos, levels[-1], seconds))
        limits.append(probe_limit())
        answers = all_answers(port, photos)
    return runs, limits, singles, answers


def naive_runs(base: Path, photos, levels, seconds) -> list[dict]:
    port = _free_port()
    env = {
        **hardware.malloc_env("system")[0],  # as a first server would run: the C library's malloc
        "MODEL_DIR": str(base / "model"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO / "container")]),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "1",
        "-b",
        f"127.0.0.1:{port}",
        "--timeout",
        "300",
        "naive_server:app",
    ]
    with server(command, env, port, base / "naive.log"):
        return [drive(port, photos, c, seconds) for c in levels]


def served_choice(log: Path) -> tuple[str, str]:
    """The precision the server's (first) worker chose, and why, from its start-up line."""
    found = re.search(r"predictor ready in [0-9.]+ s: \d+ classes, \w+ (\w+) \((.*?)\), input", log.read_text())
    if not found:
        raise SystemExit(f"no 'predictor ready' line in the server log {log}")
    return found[1], found[2]


# ------------------------------------------------------------------------------------------ main


def _table(title: str, runs: list[dict]) -> None:
    print(f"{title:<8} conc  img/s   p50 ms   p95 ms   p99 ms")
    for r in runs:
        latency = " ".join(f"{r[k]:>8.1f}" for k in ("p50_ms", "p95_ms", "p99_ms"))
        print(f"{'':<8} {r['concurrency']:>4} {r['img_s']:>6.1f} {latency}")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="distinct photos (default 256; agreement uses all)")
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per concurrency level")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts (default 1,4,16)")
    parser.add_argument("--model-dir", type=Path, help="serve this artifact instead of a generated one")
    parser.add_argument("--photos", type=Path, help="a folder of real .jpg/.png photos to re-crop")
    parser.add_argument("--server-env", nargs="*", default=[], metavar="K=V", help="extra env for the real server")
    return parser.parse_args(argv)


def _setup(base: Path, photos: list[bytes], model_dir: Path | None) -> None:
    """base/model: the given artifact or a generated stand-in; print the machine, the model and the photos."""
    if model_dir:
        (base / "model").symlink_to(model_dir.resolve())
        backbone = "given artifact"
    else:
        _, backbone = make_model_dir(base, photos)
    host = hardware.describe()
    classes = len(json.loads((base / "model" / "model_config.json").read_text())["class_names"])
    size_kib = statistics.median(map(len, photos)) / 1024
    print(f"machine: {host.cpus} cores, {host.memory_bytes / 1024**3:.0f} GiB, bf16 CPU: {host.cpu_has_bf16}, "
          f"torch {torch.__version__}; model: ResNet50 {classes} classes, {backbone}; "
          f"{len(photos)} JPEGs {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, median {size_kib:.0f} KiB")  # fmt: skip


def _limit_probe(model_dir: Path) -> tuple[Callable[[], float], list[str]]:
    """Time every in-process variant once; return a probe of the two fastest (best of them) and their names."""
    models = limit_models(model_dir, BATCH)
    rates = {name: forward_rate(*model) for name, model in models.items()}
    print("limit    " + "  ".join(f"{k}={v:.1f}" for k, v in rates.items()) + f" img/s (batch {BATCH})")
    fastest = sorted(rates, key=rates.get)[-2:]  # their order flips with the machine's mood
    return (lambda: max(forward_rate(*models[name]) for name in fastest)), fastest


def _ratios(serve: list[dict], naive: list[dict], limit: float, single_ms: float, agreement: dict) -> dict[str, str]:
    best, first = serve[-1], serve[0]
    return {
        "serve_vs_limit": f"{best['img_s'] / limit:.2f}",
        "serve_vs_naive": f"{best['img_s'] / naive[-1]['img_s']:.2f}",
        "p50_c1_ms": f"{first['p50_ms']:.1f}",
        "p50_c1_vs_decode_forward": f"{first['p50_ms'] / single_ms:.2f}",
        **agreement,
        f"serve_c{best['concurrency']}_img_s": f"{best['img_s']:.1f}",
        "limit_img_s": f"{limit:.1f}",
    }


def _agreement(answers: np.ndarray, reference: np.ndarray, trained: bool) -> dict[str, str]:
    """The server's answers vs exact fp32: top-1 agreement and the largest probability difference."""
    print(f"agreement over {len(reference)} photos: fp32 predicts {len(set(reference.argmax(1)))} distinct classes, "
          f"median top-1 probability {np.median(reference.max(1)):.2f}")  # fmt: skip
    if not trained:
        print("note: the stand-in is untrained, its answers near ties: agreement measures precision only with "
              "--model-dir (a trained model; see also bench/precision_bench.py)")  # fmt: skip
    return {
        "top1_agreement_vs_fp32": f"{float((answers.argmax(1) == reference.argmax(1)).mean()):.3f}",
        "max_prob_diff": f"{float(np.abs(answers - reference).max()):.4f}",
    }


def _allocate_as_the_server(argv: list[str], extra_env: dict[str, str]) -> None:
    """Re-run this benchmark under the heap allocator the server preloads (hardware.malloc_env): the limit and the
    single-image times are measured in this process, and the allocator alone moves a two-thread forward 20-40 %."""
    hardware.rerun_with_malloc(ServingEnv.from_environ({**os.environ, **extra_env}).malloc, [__file__, *argv])
    print(f"heap     {hardware.malloc_in_use()}, in this process (limit, single) as in the server")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    extra_env = dict(kv.split("=", 1) for kv in args.server_env)
    _allocate_as_the_server(argv, extra_env)
    with tempfile.TemporaryDirectory(prefix="serve_bench_") as tmp:
        base = Path(tmp)
        photos = make_photos(args.images, real_photo_sources(args.photos))
        _setup(base, photos, args.model_dir)
        probe_limit, fastest = _limit_probe(base / "model")
        reference = fp32_reference(base / "model", photos)
        serve, probes, singles, answers = serve_runs(base, photos, levels, args.seconds, extra_env,
                                                     probe_limit=probe_limit)  # fmt: skip
        _table("serve", serve)
        precision, reason = served_choice(base / "serve.log")
        print(f"server   chose {precision}: {reason}")
        decode_ms, forward_ms = min(singles, key=sum)  # the faster, so the ratio errs against the server
        print(
            f"single   decode+preprocess {decode_ms:.1f} ms, forward batch 1 {forward_ms:.1f} ms ({precision}), the "
            f"faster of just before / after c{levels[0]}: {sum(singles[0]):.1f} / {sum(singles[1]):.1f} ms"
        )
        limit = max(probes)  # the higher, so the ratio errs against the server
        print(f"limit    best of {' and '.join(fastest)} just before / after c{levels[-1]}: "
              f"{probes[0]:.1f} / {probes[1]:.1f} img/s")  # fmt: skip
        naive = naive_runs(base, photos, [levels[0], levels[-1]], args.seconds)
        _table("naive", naive)
    agreement = _agreement(answers, reference, trained=args.model_dir is not None)
    ratios = {**_ratios(serve, naive, limit, decode_ms + forward_ms, agreement), "precision": precision}
    print(" ".join(f"{k}={v}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
