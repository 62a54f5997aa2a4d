"""SageMaker sessions for the three ways to run: AWS, SDK local mode, and dry run (print requests)."""

import json
from collections.abc import Callable
from typing import Any

import boto3
import sagemaker
from botocore.awsrequest import AWSResponse
from sagemaker.local import LocalSession

from .config import Settings

# SDK defaults config: no telemetry requests to AWS (also keeps the SDK from reading config files).
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
LOCAL_CREDENTIALS = {"aws_access_key_id": "local-mode", "aws_secret_access_key": "local-mode"}


def make_session(settings: Settings, printer: Callable[[str], None] = print) -> sagemaker.Session:
    """A Session for settings.region: LocalSession with --local; with --dry-run every request is printed, not sent."""
    if settings.local:
        boto_session = boto3.Session(region_name=settings.region, **LOCAL_CREDENTIALS)
        session = LocalSession(boto_session=boto_session, sagemaker_config=SDK_CONFIG)
        session.config = {"local": {"local_code": True}}
        return session
    boto_session = boto3.Session(region_name=settings.region)
    if settings.dry_run:
        boto_session.events.register("before-call", _print_instead_of_sending(printer))
    bucket = _bucket_of(settings.output_s3) if settings.output_s3.startswith("s3://") else None
    return sagemaker.Session(boto_session=boto_session, sagemaker_config=SDK_CONFIG, default_bucket=bucket)


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
