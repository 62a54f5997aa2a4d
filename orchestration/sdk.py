"""SageMaker sessions: on AWS, in SDK local mode (its containers removed afterwards), and printing (dry run)."""

import contextlib
import json
import logging
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import sagemaker
from botocore.awsrequest import AWSResponse
from sagemaker.local import LocalSession

from .config import Settings

log = logging.getLogger(__name__)

# SDK defaults config: no telemetry requests to AWS (also keeps the SDK from reading config files).
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
LOCAL_CREDENTIALS = {"aws_access_key_id": "local-mode", "aws_secret_access_key": "local-mode"}


def aws_session(settings: Settings) -> sagemaker.Session:
    """A Session for settings.region, with OUTPUT's bucket as the SDK's default bucket."""
    return _session(settings, boto3.Session(region_name=settings.region))


def printing_session(settings: Settings, printer: Callable[[str], None]) -> sagemaker.Session:
    """Dry run: every request is printed (with its parameters), none is sent."""
    boto_session = boto3.Session(region_name=settings.region)
    boto_session.events.register("before-call", _print_instead_of_sending(printer))
    return _session(settings, boto_session)


def _session(settings: Settings, boto_session: boto3.Session) -> sagemaker.Session:
    bucket = _bucket_of(settings.output_s3) if settings.output_s3.startswith("s3://") else None
    return sagemaker.Session(boto_session=boto_session, sagemaker_config=SDK_CONFIG, default_bucket=bucket)


@contextlib.contextmanager
def local_session(settings: Settings) -> Iterator[LocalSession]:
    """SDK local mode leaves each job's working tree in /tmp and its stopped containers (a training one holds its
    checkpoints, hundreds of MB) behind; here the tree lives in the workdir and both go when the run ends."""
    settings.workdir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="sdk-local-", dir=settings.workdir, ignore_cleanup_errors=True) as root,
        removing_new_containers(settings.image_uri),
    ):
        boto_session = boto3.Session(region_name=settings.region, **LOCAL_CREDENTIALS)
        session = LocalSession(boto_session=boto_session, sagemaker_config=SDK_CONFIG)
        session.config = {"local": {"local_code": True, "container_root": root}}
        yield session


@contextlib.contextmanager
def removing_new_containers(image: str) -> Iterator[None]:
    """Remove the stopped containers of `image` created inside the block (SDK local mode never removes its own)."""
    before = _containers(image)  # any state: one running now and stopped later is not ours
    try:
        yield
    finally:
        after = _containers(image, stopped=True) if before is not None else None
        if after and (left := after - before):
            subprocess.run(["docker", "rm", "--volumes", *sorted(left)], capture_output=True, check=False)


def _containers(image: str, *, stopped: bool = False) -> set[str] | None:
    """IDs of the image's containers (only stopped ones if asked); None (and a warning) when Docker cannot be asked."""
    command = ["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter", f"ancestor={image}"]
    if stopped:
        command += ["--filter", "status=exited", "--filter", "status=created"]
    try:
        listed = subprocess.run(command, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        log.warning("could not list the containers of %s (%s); local mode's stopped containers stay", image, exc)
        return None
    return set(listed.stdout.split())


def _bucket_of(uri: str) -> str:
    return uri.removeprefix("s3://").split("/", 1)[0]


def _print_instead_of_sending(printer: Callable[[str], None]) -> Callable[..., Any]:
    """A botocore before-call handler: print the operation and its parameters, answer with an empty response."""

    def handler(model: Any, params: dict, **_: Any) -> tuple[AWSResponse, dict]:
        body = params.get("body")
        payload = _decode(body) if body else params.get("url_path", "")
        printer(f"[dry-run] {model.service_model.service_name} {model.name} {payload}")
        return AWSResponse(params.get("url", ""), 200, {}, None), {}

    return handler


def _decode(body: Any) -> str:
    if isinstance(body, bytes):
        try:
            return json.dumps(json.loads(body), indent=2, sort_keys=True)
        except ValueError:
            return f"<{len(body)} bytes>"
    return json.dumps(body, indent=2, sort_keys=True, default=str)
