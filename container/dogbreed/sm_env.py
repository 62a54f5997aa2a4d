"""The only owner of SageMaker's /opt/ml layout, its config JSON files and SAGEMAKER_* environment.

Every path derives from SAGEMAKER_BASE_DIR (default /opt/ml), so tests and local runs point it
at any directory shaped like /opt/ml. Nothing here creates directories or touches os.environ.
"""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .hardware import SERVING_PRECISIONS

DEFAULT_BASE_DIR = "/opt/ml"
DEFAULT_PORT = 8080
DEFAULT_SERVER_TIMEOUT = 60
REALTIME_MAX_PAYLOAD_MB = 6


@dataclass(frozen=True)
class Paths:
    """Where SageMaker puts inputs and collects outputs, relative to one base directory."""

    base: Path

    @property
    def config_dir(self) -> Path:
        return self.base / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def inputdataconfig_file(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    @property
    def resourceconfig_file(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def checkpointconfig_file(self) -> Path:
        return self.config_dir / "checkpointconfig.json"

    @property
    def debughookconfig_file(self) -> Path:
        return self.config_dir / "debughookconfig.json"

    @property
    def data_dir(self) -> Path:
        return self.base / "input" / "data"

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def tensors_dir(self) -> Path:
        return self.output_dir / "tensors"

    @property
    def default_checkpoint_dir(self) -> Path:
        return self.base / "checkpoints"


def paths_from_environ(environ: Mapping[str, str] = os.environ) -> Paths:
    return Paths(Path(environ.get("SAGEMAKER_BASE_DIR", DEFAULT_BASE_DIR)))


def read_json(path: Path) -> dict:
    """Parse a SageMaker config file, a JSON object; absent → {}; malformed → UserError naming the file."""
    if not path.is_file():
        return {}
    try:
        parsed = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise UserError(f'{path} must hold a JSON object like {{"epochs": "5"}}, not {json.dumps(parsed)[:80]}')
    return parsed


@dataclass(frozen=True)
class TrainingEnv:
    """What a training job is given: hyperparameters (strings), channels, checkpoint dir, hosts."""

    paths: Paths
    hyperparameters: dict[str, str]
    channels: dict[str, Path]
    checkpoint_dir: Path  # checkpointconfig.json's LocalPath, else paths.default_checkpoint_dir
    current_host: str = "algo-1"
    hosts: list[str] = field(default_factory=lambda: ["algo-1"])
    network_interface: str | None = None
    debughook_config: Path | None = None
    # torch.distributed rendezvous overrides (SM_/MASTER_ADDR, SM_/MASTER_PORT); None: master host, default port
    master_addr: str | None = None
    master_port: int | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "TrainingEnv":
        paths = paths_from_environ(environ)
        hyperparameters = read_json(paths.hyperparameters_file)
        resources = read_json(paths.resourceconfig_file)
        checkpoint = read_json(paths.checkpointconfig_file)
        hosts = sorted(resources.get("hosts") or ["algo-1"])
        debug_config = environ.get("SMDEBUG_CONFIG_FILE_PATH") or paths.debughookconfig_file
        return cls(
            paths=paths,
            hyperparameters={str(k): str(v) for k, v in hyperparameters.items()},
            channels=_channels(paths),
            current_host=resources.get("current_host", hosts[0]),
            hosts=hosts,
            network_interface=resources.get("network_interface_name"),
            checkpoint_dir=Path(checkpoint.get("LocalPath") or paths.default_checkpoint_dir),
            debughook_config=Path(debug_config) if Path(debug_config).is_file() else None,
            master_addr=environ.get("SM_MASTER_ADDR") or environ.get("MASTER_ADDR") or None,
            master_port=_int_env(environ, "SM_MASTER_PORT", None) or _int_env(environ, "MASTER_PORT", None),
        )


def _channels(paths: Paths) -> dict[str, Path]:
    """Channels named in inputdataconfig.json, plus any directory present under input/data."""
    declared = read_json(paths.inputdataconfig_file)
    present = [p.name for p in paths.data_dir.iterdir() if p.is_dir()] if paths.data_dir.is_dir() else []
    return {name: paths.data_dir / name for name in sorted({*declared, *present})}


def _int_env(environ: Mapping[str, str], key: str, default: int | None, *, minimum: int = 1) -> int | None:
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise UserError(f"{key}={raw!r} must be at least {minimum}")
    return value


DEFAULT_MAX_IMAGE_PIXELS = 40_000_000  # 40 MP: beyond any photo that fits a 6 MB request
# All images of one request: 2.5 x the largest image, about two seconds of decoding on one core; a 6 MB body of
# ordinary photos (256 of 500x375, or sixty 1024x768 JPEGs) holds about 50 MP.
DEFAULT_MAX_REQUEST_PIXELS = 100_000_000


@dataclass(frozen=True)
class ServingEnv:
    """How SageMaker asks the model server to run (real-time endpoint or batch transform)."""

    model_dir: Path
    port: int = DEFAULT_PORT
    workers: int | None = None  # None: chosen from cores and memory by the launcher
    timeout: int = DEFAULT_SERVER_TIMEOUT
    max_payload_mb: int = REALTIME_MAX_PAYLOAD_MB
    batch: bool = False
    batch_strategy: str = "MULTI_RECORD"
    max_concurrent_transforms: int = 1
    # Our own serving knobs (DOGBREED_*), documented in dogbreed.serve.
    precision: str = "auto"  # auto | fp32 | bf16 | int8; auto: the fastest timed at start-up (dogbreed.hardware)
    max_batch_size: int = 16  # dynamic batching: most images per forward pass
    max_batch_delay_ms: int = 20  # how long a batch waits for callers being decoded or coming back
    torch_threads: int | None = None  # per worker; None: cores // workers
    streams: int | None = None  # concurrent batches per worker; None: one per torch thread on CPU, 1 on GPU
    http_threads: int | None = None  # concurrent requests per worker; None: 2 * max_batch_size
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * 1024 * 1024

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "ServingEnv":
        strategy = environ.get("SAGEMAKER_BATCH_STRATEGY", "MULTI_RECORD").strip().upper() or "MULTI_RECORD"
        if strategy not in ("SINGLE_RECORD", "MULTI_RECORD"):
            raise UserError(f"SAGEMAKER_BATCH_STRATEGY={strategy!r}: expected SINGLE_RECORD or MULTI_RECORD")
        precision = environ.get("DOGBREED_PRECISION", "auto").strip().lower() or "auto"
        if precision not in SERVING_PRECISIONS:
            raise UserError(f"DOGBREED_PRECISION={precision!r}: expected one of {', '.join(SERVING_PRECISIONS)}")
        return cls(
            model_dir=paths_from_environ(environ).model_dir,
            port=_int_env(environ, "SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT),
            workers=_int_env(environ, "SAGEMAKER_MODEL_SERVER_WORKERS", None),
            timeout=_int_env(environ, "SAGEMAKER_MODEL_SERVER_TIMEOUT", DEFAULT_SERVER_TIMEOUT),
            max_payload_mb=_int_env(environ, "SAGEMAKER_MAX_PAYLOAD_IN_MB", REALTIME_MAX_PAYLOAD_MB),
            batch=environ.get("SAGEMAKER_BATCH", "").strip().lower() == "true",
            batch_strategy=strategy,
            max_concurrent_transforms=_int_env(environ, "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", 1),
            precision=precision,
            max_batch_size=_int_env(environ, "DOGBREED_MAX_BATCH_SIZE", 16),
            max_batch_delay_ms=_int_env(environ, "DOGBREED_MAX_BATCH_DELAY_MS", 20, minimum=0),
            torch_threads=_int_env(environ, "DOGBREED_TORCH_THREADS", None),
            streams=_int_env(environ, "DOGBREED_STREAMS", None),
            http_threads=_int_env(environ, "DOGBREED_HTTP_THREADS", None),
            max_image_pixels=_int_env(environ, "DOGBREED_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS),
            max_request_pixels=_int_env(environ, "DOGBREED_MAX_REQUEST_PIXELS", DEFAULT_MAX_REQUEST_PIXELS),
        )
