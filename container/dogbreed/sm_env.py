"""The only owner of SageMaker's /opt/ml layout, its config JSON files and SAGEMAKER_* environment.

Every path derives from SAGEMAKER_BASE_DIR (default /opt/ml), so tests and local runs point it
at any directory shaped like /opt/ml. Nothing here creates directories or touches os.environ.
"""

import json
import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import UserError
from .hardware import MALLOCS, SERVING_PRECISIONS

DEFAULT_BASE_DIR = "/opt/ml"
DEFAULT_PORT = 8080
DEFAULT_SERVER_TIMEOUT = 60
REALTIME_MAX_PAYLOAD_MB = 6
MAX_PORT = 65535
TRANSFORM_MAX_PAYLOAD_MB = 100  # the largest MaxPayloadInMB a batch transform job accepts


def _under(*parts: str) -> property:
    """A read-only attribute: the path `parts` below the base directory (e.g. /opt/ml/model)."""
    return property(lambda paths: paths.base.joinpath(*parts), doc="/opt/ml/" + "/".join(parts))


@dataclass(frozen=True)
class Paths:
    """Where SageMaker puts inputs and collects outputs, relative to one base directory."""

    base: Path

    config_dir = _under("input", "config")
    hyperparameters_file = _under("input", "config", "hyperparameters.json")
    inputdataconfig_file = _under("input", "config", "inputdataconfig.json")
    resourceconfig_file = _under("input", "config", "resourceconfig.json")
    checkpointconfig_file = _under("input", "config", "checkpointconfig.json")
    debughookconfig_file = _under("input", "config", "debughookconfig.json")
    data_dir = _under("input", "data")
    unpacked_dir = _under("input", "unpacked")  # data channels uploaded as archives, unpacked (dogbreed.archives)
    model_dir = _under("model")
    output_dir = _under("output")
    output_data_dir = _under("output", "data")
    failure_file = _under("output", "failure")
    tensors_dir = _under("output", "tensors")  # the Debugger hook writes here; SageMaker uploads it
    default_checkpoint_dir = _under("checkpoints")


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
        hosts, current_host = _hosts(resources, paths.resourceconfig_file)
        debug_config = environ.get("SMDEBUG_CONFIG_FILE_PATH") or paths.debughookconfig_file
        return cls(
            paths=paths,
            hyperparameters={str(k): str(v) for k, v in hyperparameters.items()},
            channels=_channels(paths),
            current_host=current_host,
            hosts=hosts,
            network_interface=resources.get("network_interface_name"),
            checkpoint_dir=Path(checkpoint.get("LocalPath") or paths.default_checkpoint_dir),
            debughook_config=Path(debug_config) if Path(debug_config).is_file() else None,
            master_addr=environ.get("SM_MASTER_ADDR") or environ.get("MASTER_ADDR") or None,
            master_port=_int_env(environ, "SM_MASTER_PORT", None) or _int_env(environ, "MASTER_PORT", None),
        )


def _hosts(resources: dict, path: Path) -> tuple[list[str], str]:
    """resourceconfig.json's hosts, sorted, and current_host (one of them); UserError for any other shape: every
    process takes its rank from where its host stands in the list."""
    hosts = resources.get("hosts") or ["algo-1"]
    if not isinstance(hosts, list) or not all(isinstance(host, str) for host in hosts):
        raise UserError(f'{path}: "hosts" must be a list of host names like ["algo-1"], not {json.dumps(hosts)[:80]}')
    current = resources.get("current_host", min(hosts))
    if current not in hosts:
        raise UserError(f'{path}: "current_host" {json.dumps(current)[:80]} is not one of "hosts" {hosts}')
    return sorted(hosts), current


def _channels(paths: Paths) -> dict[str, Path]:
    """Channels named in inputdataconfig.json, plus any directory present under input/data. A Pipe-mode channel (a
    FIFO of records, input/data/<name>_<epoch>) is refused: the job reads folders of image files."""
    declared = read_json(paths.inputdataconfig_file)
    piped = sorted(
        name for name, spec in declared.items() if isinstance(spec, dict) and spec.get("TrainingInputMode") == "Pipe"
    )
    if piped:
        raise UserError(
            f"channel(s) {', '.join(piped)} use Pipe input mode, a stream of records; this image reads image files: "
            "give the channels File (the default) or FastFile input mode"
        )
    present = [p.name for p in paths.data_dir.iterdir() if p.is_dir()] if paths.data_dir.is_dir() else []
    return {name: paths.data_dir / name for name in sorted({*declared, *present})}


def _int_env(
    environ: Mapping[str, str], key: str, default: int | None, *, minimum: int = 1, maximum: int | None = None
) -> int | None:
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise UserError(f"{key}={raw!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise UserError(f"{key}={raw!r} must be at most {maximum}")
    return value


DEFAULT_PRECISION = "auto"
DEFAULT_MAX_BATCH_SIZE = 16
# Also the most images one request may carry (serving.codecs.MAX_IMAGES_PER_REQUEST); a ResNet50 forward of 256
# images peaks at about 3.7 GB in fp32, and each image more adds about 11 MB.
MAX_BATCH_SIZE = 256
DEFAULT_MAX_BATCH_DELAY_MS = 20
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000  # 40 MP: beyond any photo that fits a 6 MB request
# All images of one request: 2.5 x the largest image, about two seconds of decoding on one core; a 6 MB body of
# ordinary photos (256 of 500x375, or sixty 1024x768 JPEGs) holds about 50 MP.
DEFAULT_MAX_REQUEST_PIXELS = 100_000_000


@dataclass(frozen=True)
class Setting:
    """How one environment variable sets a ServingEnv field; `shown` describes a default computed at start-up."""

    variable: str
    doc: str
    shown: str = ""
    minimum: int = 1  # integers
    maximum: int | None = None
    choices: tuple[str, ...] = ()  # strings, matched ignoring case


def _setting(variable: str, default: object, doc: str, **options) -> Any:
    """A ServingEnv field with its variable, default and one-line doc declared together."""
    return field(default=default, metadata={"setting": Setting(variable, doc, **options)})


@dataclass(frozen=True)
class ServingEnv:
    """How SageMaker asks the model server to run (real-time endpoint or batch transform): the one owner of the
    serving variables, their defaults and their documentation (`serve --help`, README "Serving")."""

    model_dir: Path
    port: int = _setting("SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT, "listening port on 0.0.0.0", maximum=MAX_PORT)
    workers: int | None = _setting(
        "SAGEMAKER_MODEL_SERVER_WORKERS", None, "worker processes, each with a model copy",
        shown="one per 4 cores, bounded by memory (2 GiB each); 1 on GPU hosts",
    )  # fmt: skip
    timeout: int = _setting(
        "SAGEMAKER_MODEL_SERVER_TIMEOUT",
        DEFAULT_SERVER_TIMEOUT,
        "worker heartbeat and per-request inference deadline (s)",
    )
    max_payload_mb: int = _setting(
        "SAGEMAKER_MAX_PAYLOAD_IN_MB", REALTIME_MAX_PAYLOAD_MB,
        f"request body limit (MB; at most {TRANSFORM_MAX_PAYLOAD_MB}, batch transform's largest MaxPayloadInMB)",
        maximum=TRANSFORM_MAX_PAYLOAD_MB,
    )  # fmt: skip
    batch: str = _setting(
        "SAGEMAKER_BATCH", "false",
        "true in a batch transform job: an image the server cannot read is answered 200 {\"error\": ...} "
        "(SageMaker fails the whole job on one 4xx)",
        choices=("true", "false"),
    )  # fmt: skip
    batch_strategy: str = _setting(
        "SAGEMAKER_BATCH_STRATEGY", "MULTI_RECORD", "batch transform: answered on /execution-parameters",
        choices=("SINGLE_RECORD", "MULTI_RECORD"),
    )  # fmt: skip
    max_concurrent_transforms: int = _setting(
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", 1, "batch transform: answered on /execution-parameters"
    )
    precision: str = _setting(
        "DOGBREED_PRECISION", DEFAULT_PRECISION, "auto (the fastest here, timed at start-up), fp32, bf16 or int8",
        choices=SERVING_PRECISIONS,
    )  # fmt: skip
    max_batch_size: int = _setting(
        "DOGBREED_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE,
        f"dynamic batching: most images per forward pass (at most {MAX_BATCH_SIZE}, as many as one request carries)",
        maximum=MAX_BATCH_SIZE,
    )  # fmt: skip
    max_batch_delay_ms: int = _setting(
        "DOGBREED_MAX_BATCH_DELAY_MS", DEFAULT_MAX_BATCH_DELAY_MS,
        "dynamic batching: longest wait for callers still decoding or coming back (a lone request never waits)",
        minimum=0,
    )  # fmt: skip
    torch_threads: int | None = _setting(
        "DOGBREED_TORCH_THREADS", None, "compute threads per worker", shown="cores / workers"
    )
    streams: int | None = _setting(
        "DOGBREED_STREAMS", None, "batches a worker computes at the same time, sharing its threads",
        shown="one per thread (CPU), 1 (GPU)",
    )  # fmt: skip
    http_threads: int | None = _setting(
        "DOGBREED_HTTP_THREADS", None, "concurrent requests per worker", shown="2 x max batch size, at least 4"
    )
    malloc: str = _setting(
        "DOGBREED_MALLOC", "tcmalloc", "heap allocator of the model server: tcmalloc (when installed) or system",
        choices=MALLOCS,
    )  # fmt: skip
    max_image_pixels: int = _setting(
        "DOGBREED_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS, "largest image accepted (width x height)"
    )
    max_request_pixels: int = _setting(
        "DOGBREED_MAX_REQUEST_PIXELS", DEFAULT_MAX_REQUEST_PIXELS, "all images of one request together"
    )

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * 1024 * 1024

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "ServingEnv":
        """Each field from its variable (unset or blank: the default); UserError names a bad value."""
        values = {f.name: _read_setting(environ, f) for f in fields(cls) if "setting" in f.metadata}
        return cls(model_dir=paths_from_environ(environ).model_dir, **values)

    @classmethod
    def variables_table(cls) -> str:
        """The serving variables as a Markdown table: variable, default, meaning (README "Serving", serve --help)."""
        rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
        for f in fields(cls):
            if setting := f.metadata.get("setting"):
                rows.append(f"| `{setting.variable}` | {setting.shown or _shown(f.default)} | {setting.doc} |")
        return "\n".join(rows) + "\n"


def _read_setting(environ: Mapping[str, str], f: Field) -> object:
    """A setting's value: one of its choices (matched ignoring case) when it has them, else an integer."""
    setting: Setting = f.metadata["setting"]
    if not setting.choices:
        return _int_env(environ, setting.variable, f.default, minimum=setting.minimum, maximum=setting.maximum)
    raw = environ.get(setting.variable, "").strip()
    if not raw:
        return f.default
    by_lower = {choice.lower(): choice for choice in setting.choices}
    if raw.lower() not in by_lower:
        raise UserError(f"{setting.variable}={raw!r}: expected one of {', '.join(setting.choices)}")
    return by_lower[raw.lower()]


def _shown(default: object) -> str:
    """40000000 → '40 000 000'; small numbers and words as they are."""
    return f"{default:,}".replace(",", " ") if isinstance(default, int) and default >= 10_000 else str(default)
