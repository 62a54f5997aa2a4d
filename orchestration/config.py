"""Command-line and config-file inputs: one validated Settings object, or a UsageError naming the flag."""

import argparse
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dogbreed.contract.hyperparams import Hyperparameters
from dogbreed.errors import UserError

from .errors import UsageError

COMMANDS = ("hpo", "train", "deploy", "predict", "cleanup", "report", "transform", "all")
DEFAULT_TRAIN_INSTANCE = "ml.g4dn.xlarge"
DEFAULT_ENDPOINT_INSTANCE = "ml.m5.large"
LOCAL_IMAGE = "dog-breed-classifier:latest"
LOCAL_ROLE = "arn:aws:iam::111111111111:role/local-mode"
LOCAL_REGION = "us-east-1"
OBJECTIVES = ("valid_loss", "valid_acc")

_ROLE = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")
_S3 = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_IMAGE = re.compile(r"[\w.-]+(:\d+)?(/[\w.-]+)+(:[\w.-]+|@sha256:[0-9a-f]{64})?|[\w.-]+(:[\w.-]+)?")
_INSTANCE = re.compile(r"ml\.[a-z0-9-]+\.[a-z0-9]+")
_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
_HP_KEY = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Settings:
    """Everything one run needs; built by `parse_settings`, never from os.environ."""

    command: str
    region: str = ""
    image_uri: str = ""
    role_arn: str = ""
    data_s3: str = ""
    output_s3: str = ""
    local: bool = False
    dry_run: bool = False
    workdir: Path = Path("orchestrate-runs")
    poll_seconds: float = 30.0
    train_instance_type: str = DEFAULT_TRAIN_INSTANCE
    train_instance_count: int = 1
    endpoint_instance_type: str = DEFAULT_ENDPOINT_INSTANCE
    transform_input: str = ""
    transform_output: str = ""
    transform_instance_type: str = DEFAULT_ENDPOINT_INSTANCE
    hyperparameters: dict[str, str] = field(default_factory=dict)
    hyperparameters_file: Path | None = None
    objective: str = "valid_loss"
    max_jobs: int = 4
    max_parallel_jobs: int = 2
    spot: bool = False
    tune_with_augmentation: bool = False
    max_run_seconds: int = 24 * 3600
    max_wait_seconds: int = 0
    managed_rules: bool = True
    checkpoint_s3: str = ""
    training_job: str = ""
    endpoint_name: str = ""
    images: tuple[Path, ...] = ()
    count: int = 6
    keep_endpoint: bool = False

    @property
    def best_hyperparameters_file(self) -> Path:
        return self.hyperparameters_file or self.workdir / "best_hyperparameters.json"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"


# Which inputs each command needs (on SageMaker; --local fills image, role and region itself).
REQUIRED = {
    "hpo": ("image_uri", "role_arn", "data_s3", "output_s3", "region"),
    "train": ("image_uri", "role_arn", "data_s3", "output_s3", "region"),
    "deploy": ("image_uri", "role_arn", "region"),
    "predict": ("region",),
    "cleanup": ("region",),
    "report": ("region",),
    "transform": ("image_uri", "role_arn", "transform_input", "output_s3", "region"),
    "all": ("image_uri", "role_arn", "data_s3", "output_s3", "region"),
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _matching(pattern: re.Pattern, what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = str(value).strip()
        if not pattern.fullmatch(text):
            raise ValueError(f"{text!r} is not {what}")
        return text

    return check


def _number(kind: type, minimum: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if number < minimum:
            raise ValueError(f"{value!r} must be at least {minimum}")
        return number

    return check


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is not true or false")


def _hyperparameters(value: Any) -> dict[str, str]:
    """KEY=VALUE strings (flags) or a table (config file) → {key: str(value)}, each checked by the training job's
    own parser, so a typo is refused here instead of failing the job on SageMaker."""
    items = value.items() if isinstance(value, dict) else (_split_pair(v) for v in value)
    result = {}
    for key, raw in items:
        if not _HP_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a hyperparameter name")
        result[key] = str(raw).lower() if isinstance(raw, bool) else str(raw)
    try:
        Hyperparameters.from_strings(result)
    except UserError as exc:
        raise ValueError(str(exc)) from None
    return result


def _split_pair(text: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    if not sep or not value:
        raise ValueError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def _s3_or_local(value: Any, local: bool) -> str:
    text = str(value).strip()
    if local and not text.startswith("s3://"):
        path = Path(text.removeprefix("file://")).expanduser().resolve()
        return f"file://{path}"
    return _matching(_S3, "an s3://bucket/prefix URI (bucket names: 3-63 lowercase letters, digits, . or -)")(text)


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "region": _matching(_REGION, "an AWS region like us-east-1"),
    "image_uri": _matching(_IMAGE, "an image URI like ACCOUNT.dkr.ecr.REGION.amazonaws.com/dog-breed-classifier:TAG"),
    "role_arn": _matching(_ROLE, "an IAM role ARN like arn:aws:iam::123456789012:role/NAME"),
    "workdir": Path,
    "poll_seconds": _number(float, 0.01),
    "train_instance_type": _matching(_INSTANCE, "a SageMaker instance type like ml.g4dn.xlarge"),
    "train_instance_count": _number(int, 1),
    "endpoint_instance_type": _matching(_INSTANCE, "a SageMaker instance type like ml.m5.large"),
    "transform_instance_type": _matching(_INSTANCE, "a SageMaker instance type like ml.m5.large"),
    "hyperparameters": _hyperparameters,
    "hyperparameters_file": Path,
    "objective": _choice(OBJECTIVES),
    "max_jobs": _number(int, 1),
    "max_parallel_jobs": _number(int, 1),
    "max_run_seconds": _number(int, 60),
    "max_wait_seconds": _number(int, 0),
    "training_job": _matching(_NAME, "a SageMaker job name (letters, digits, hyphens)"),
    "endpoint_name": _matching(_NAME, "a SageMaker endpoint name (letters, digits, hyphens)"),
    "images": lambda value: tuple(Path(v) for v in ([value] if isinstance(value, str) else value)),
    "count": _number(int, 1),
    "local": _boolean,
    "dry_run": _boolean,
    "spot": _boolean,
    "tune_with_augmentation": _boolean,
    "managed_rules": _boolean,
    "keep_endpoint": _boolean,
}
_S3_FIELDS = ("data_s3", "output_s3", "checkpoint_s3", "transform_input", "transform_output")
_SETTING_NAMES = {f.name for f in fields(Settings)} - {"command"}


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one subcommand per workflow step, all inputs also accepted from --config."""
    parser = argparse.ArgumentParser(
        prog="orchestrate.py",
        description="Tune, train (Debugger + Profiler), report, deploy, predict and clean up the "
        "dog-breed-classifier image on SageMaker, or locally with --local.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "hpo": "hyperparameter tuning; writes the best hyperparameters to a file train reads",
        "train": "training job with Debugger hook, rules and Profiler",
        "deploy": "endpoint from a training job's model; waits until InService",
        "predict": "send test images to the endpoint; print true vs predicted breed",
        "cleanup": "delete the endpoint, its endpoint config and model",
        "report": "loss plot, local rule verdicts, managed rule statuses, profiler summary (Markdown)",
        "transform": "batch transform of the images under --transform-input with a training job's model",
        "all": "hpo → train → report → deploy → predict → cleanup",
    }
    for name in COMMANDS:
        sub = commands.add_parser(name, help=helps[name], description=helps[name], argument_default=None)
        _add_where_flags(sub.add_argument)
        _add_job_flags(sub.add_argument)
    return parser


def _add_where_flags(add: Callable[..., Any]) -> None:
    """Where the run goes and what it reads: account, data, output, instances."""
    add("--config", type=Path, help="JSON or TOML file of these settings (keys like image_uri); flags win")
    add("--image-uri", help=f"ECR image URI (with --local: the local image, default {LOCAL_IMAGE})")
    add("--role-arn", help="SageMaker execution role ARN")
    add("--data-s3", help="prefix of train/ [valid/] [test/] (dogImages), or of breed folders (--local: a directory)")
    add("--output-s3", help="where jobs write models, tensors and reports (with --local: a local directory)")
    add("--region", help=f"AWS region (with --local: default {LOCAL_REGION})")
    add("--local", action="store_const", const=True, help="SDK local mode with the local image (no AWS)")
    add("--dry-run", action="store_const", const=True, help="print the requests instead of sending them")
    add("--workdir", help="where state, best hyperparameters and reports go (default orchestrate-runs)")
    add("--poll-seconds", help="seconds between status checks while waiting (default 30)")
    add("--train-instance-type", help=f"training instance type (default {DEFAULT_TRAIN_INSTANCE})")
    add("--train-instance-count", help="training instances (default 1)")
    add("--endpoint-instance-type", help=f"endpoint instance type (default {DEFAULT_ENDPOINT_INSTANCE})")
    add("--transform-input", help="transform: S3 prefix of images to label (with --local: a local directory)")
    add("--transform-output", help="transform: where the answers go (default OUTPUT/transform/JOB)")
    add("--transform-instance-type", help=f"batch transform instance type (default {DEFAULT_ENDPOINT_INSTANCE})")


def _add_job_flags(add: Callable[..., Any]) -> None:
    """What the jobs do: hyperparameters, tuning, limits, Debugger, and which job or endpoint a step acts on."""
    add("--hp", dest="hyperparameters", action="append", metavar="KEY=VALUE", help="hyperparameter (repeatable)")
    add("--hyperparameters-file", help="best hyperparameters file (default WORKDIR/best_hyperparameters.json)")
    add("--objective", help=f"tuning objective: {' (minimise) or '.join(OBJECTIVES)} (maximise)")
    add("--max-jobs", help="tuning: training jobs in total (default 4)")
    add("--max-parallel-jobs", help="tuning: training jobs at once (default 2)")
    add(
        "--tune-with-augmentation",
        action="store_const",
        const=True,
        help="hpo: trials train with augment=true (the backbone runs every epoch) instead of on cached features",
    )
    add("--spot", action="store_const", const=True, help="managed spot training (checkpoints resume it)")
    add("--max-run-seconds", help="training time limit (default 86400)")
    add("--max-wait-seconds", help="spot: limit including waiting for capacity (default 2 x max-run)")
    add(
        "--no-managed-rules",
        dest="managed_rules",
        action="store_const",
        const=False,
        help="no managed Debugger rules (closed to new customers since 2026-07); report checks locally",
    )
    add("--checkpoint-s3", help="checkpoint S3 URI (default OUTPUT/checkpoints/JOB)")
    add("--training-job", help="training job to deploy, transform with or report on (default: the last one trained)")
    add("--endpoint-name", help="endpoint to predict with or clean up (default: the last one deployed)")
    add("--images", nargs="+", help="image files to predict (default: COUNT images of the test split, if any)")
    add("--count", help="test images to predict (default 6)")
    add("--keep-endpoint", action="store_const", const=True, help="all: leave the endpoint running")


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Flags over config file over defaults; every value validated; UsageError names the flag."""
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("command", "config")}
    merged = {**_read_config_file(args.config), **given}
    local = _boolean(merged.get("local", False))
    values = {name: _validate(name, raw, local) for name, raw in merged.items()}
    settings = Settings(command=args.command, **_local_defaults(values, local))
    _require(settings)
    return settings


def _read_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except OSError as exc:
        raise UsageError(f"--config: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(
            f"--config: {path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"--config: {path} must hold a table of settings")
    settings = {str(key).replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(settings) - _SETTING_NAMES)
    if unknown:
        raise UsageError(f"--config: {path}: unknown setting(s) {', '.join(unknown)}")
    return settings


def _validate(name: str, raw: Any, local: bool) -> Any:
    try:
        if name in _S3_FIELDS:
            return _s3_or_local(raw, local)
        return _VALIDATORS.get(name, str)(raw)
    except ValueError as exc:
        raise UsageError(f"{_flag(name)}: {exc}") from None


def _local_defaults(values: dict[str, Any], local: bool) -> dict[str, Any]:
    if not local:
        return values
    defaults = {
        "image_uri": LOCAL_IMAGE,
        "role_arn": LOCAL_ROLE,
        "region": LOCAL_REGION,
        "train_instance_type": "local",
        "endpoint_instance_type": "local",
        "transform_instance_type": "local",
        "managed_rules": False,
    }
    workdir = Path(values.get("workdir", Settings.workdir)).resolve()
    defaults["output_s3"] = f"file://{workdir / 'local-output'}"
    return {**values, **defaults, **{k: v for k, v in values.items() if k in ("image_uri", "region", "output_s3")}}


def _require(settings: Settings) -> None:
    missing = [name for name in REQUIRED[settings.command] if not getattr(settings, name)]
    if missing:
        flags = ", ".join(_flag(name) for name in missing)
        raise UsageError(f"{settings.command}: missing required input {flags} (give it as a flag or in --config)")
    if settings.local and settings.command in ("hpo", "deploy", "predict", "cleanup"):
        raise UsageError(
            f"--local: '{settings.command}' needs SageMaker; local endpoints live only inside one run, "
            "so use 'all --local' (tuning is skipped there) or 'train --local'"
        )
    if settings.local and settings.spot:
        raise UsageError("--spot: managed spot training needs SageMaker; it does not combine with --local")
    if settings.local and settings.dry_run:
        raise UsageError("--dry-run prints SageMaker requests; it does not combine with --local")
