"""The endpoint: deploy a training job's model, send test images, delete endpoint + config + model."""

import base64
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice, zip_longest
from pathlib import Path
from urllib.parse import urlparse

import sagemaker
from botocore.exceptions import ClientError
from sagemaker.model import Model

from . import dataset
from .config import Settings
from .errors import OrchestrationError
from .waiting import Watched, wait_for

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Requests carry the image base64-encoded in JSON ({"instances": [{"b64": ...}]}, a shape the container reads);
# answers are the container's labelled JSON: {"predictions": [{"label": "001.Affenpinscher", "probability": ...}]}.
CONTENT_TYPE = "application/json"
ACCEPT_LABELLED = "application/json;verbose=true"


def model_artifact(session: sagemaker.Session, training_job: str, default: str = "") -> str:
    """The model.tar.gz a training job produced (or `default`, when its description names none)."""
    description = session.sagemaker_client.describe_training_job(TrainingJobName=training_job)
    artifact = (description.get("ModelArtifacts") or {}).get("S3ModelArtifacts") or default
    if artifact:
        return artifact
    raise OrchestrationError(
        f"training job {training_job} has no model artifact (status {description.get('TrainingJobStatus')})"
    )


def local_model_artifact(output: str, training_job: str) -> str:
    """Local mode forgets its jobs when the process ends; their artifacts stay in OUTPUT/JOB."""
    artifact = f"{output}/{training_job}/model.tar.gz"
    if not Path(urlparse(artifact).path).is_file():
        raise OrchestrationError(f"local training job {training_job}: no model artifact at {artifact}")
    return artifact


def deploy(settings: Settings, session: sagemaker.Session, model_data: str, endpoint_name: str, blocking: bool) -> None:
    """Model (same name as the endpoint and its config) → endpoint; blocking: until it is in service."""
    model = Model(
        image_uri=settings.image_uri,
        model_data=model_data,
        role=settings.role_arn,
        name=endpoint_name,
        sagemaker_session=session,
    )
    model.deploy(
        initial_instance_count=1,
        instance_type=settings.endpoint_instance_type,
        endpoint_name=endpoint_name,
        wait=blocking,
    )


def wait(settings: Settings, session: sagemaker.Session, endpoint_name: str, say: Callable[[str], None]) -> None:
    """Until InService, with a line per status change."""
    wait_for(
        Watched(
            kind="endpoint",
            name=endpoint_name,
            describe=lambda: session.sagemaker_client.describe_endpoint(EndpointName=endpoint_name),
            status_key="EndpointStatus",
            done=("InService",),
        ),
        settings.poll_seconds,
        say,
    )


@dataclass(frozen=True)
class Sample:
    """One image to send, and its true breed (class folder name) when known."""

    name: str
    truth: str
    body: bytes


def samples(settings: Settings, session: sagemaker.Session) -> list[Sample]:
    """--images files, or --count images spread over the breeds (of the test split where there is one)."""
    if settings.images:
        return [Sample(p.name, p.parent.name, _read(p)) for p in settings.images]
    source = dataset.sample_source(settings.data_s3, session)
    found = _local_images(source) if source.startswith("file://") else _s3_images(session, source)
    chosen = list(islice(_round_robin(found), settings.count))
    if not chosen:
        raise OrchestrationError(f"--data-s3: no images under {source}/<breed>/")
    return chosen


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OrchestrationError(f"--images: cannot read {path}: {exc.strerror}") from None


def _round_robin(by_breed: dict[str, list[Callable[[], Sample]]]) -> Iterator[Sample]:
    """One image per breed in turn, so a few samples cover several breeds."""
    for row in zip_longest(*(by_breed[b] for b in sorted(by_breed))):
        yield from (load() for load in row if load is not None)


def _local_images(uri: str) -> dict[str, list[Callable[[], Sample]]]:
    root = Path(urlparse(uri).path)
    files = sorted(p for p in root.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    by_breed: dict[str, list[Callable[[], Sample]]] = {}
    for path in files:
        by_breed.setdefault(path.parent.name, []).append(lambda p=path: Sample(p.name, p.parent.name, p.read_bytes()))
    return by_breed


def _s3_images(session: sagemaker.Session, uri: str) -> dict[str, list[Callable[[], Sample]]]:
    parsed = urlparse(uri)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/") + "/"
    s3 = session.boto_session.client("s3")
    by_breed: dict[str, list[Callable[[], Sample]]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            parts = key[len(prefix) :].split("/")
            if len(parts) == 2 and key.lower().endswith(IMAGE_SUFFIXES):
                by_breed.setdefault(parts[0], []).append(
                    lambda k=key, b=parts[0]: Sample(
                        k.rsplit("/", 1)[-1], b, s3.get_object(Bucket=bucket, Key=k)["Body"].read()
                    )
                )
    return by_breed


def predict(
    session: sagemaker.Session, endpoint_name: str, images: list[Sample], say: Callable[[str], None] = print
) -> int:
    """Send each image; print true vs predicted breed; return how many were right."""
    runtime = session.sagemaker_runtime_client
    correct = 0
    say(f"{'image':<34} {'true breed':<28} {'predicted breed':<28} probability")
    for sample in images:
        body = json.dumps({"instances": [{"b64": base64.b64encode(sample.body).decode()}]})
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name, ContentType=CONTENT_TYPE, Accept=ACCEPT_LABELLED, Body=body
        )
        label, probability = _top_prediction(response["Body"].read())
        correct += label == sample.truth
        say(f"{sample.name[:34]:<34} {sample.truth[:28]:<28} {label[:28]:<28} {probability:.3f}")
    say(f"{correct}/{len(images)} correct")
    return correct


def _top_prediction(body: bytes) -> tuple[str, float]:
    try:
        best = json.loads(body)["predictions"][0]
        return str(best["label"]), float(best["probability"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise OrchestrationError(f"unexpected endpoint answer: {body[:200]!r}") from None


def cleanup(session: sagemaker.Session, endpoint_name: str, say: Callable[[str], None] = print) -> list[str]:
    """Delete the endpoint, then its endpoint config, then its models; say and return what was deleted."""
    client = session.sagemaker_client
    config_name = client.describe_endpoint(EndpointName=endpoint_name).get("EndpointConfigName", endpoint_name)
    variants = client.describe_endpoint_config(EndpointConfigName=config_name).get("ProductionVariants") or []
    model_names = [v["ModelName"] for v in variants if "ModelName" in v] or [endpoint_name]
    client.delete_endpoint(EndpointName=endpoint_name)
    deleted = [f"endpoint {endpoint_name}"]
    client.delete_endpoint_config(EndpointConfigName=config_name)
    deleted.append(f"endpoint config {config_name}")
    for name in model_names:
        try:
            client.delete_model(ModelName=name)
            deleted.append(f"model {name}")
        except ClientError as exc:
            log.warning("model %s not deleted: %s", name, exc.response.get("Error", {}).get("Message", exc))
    say("deleted: " + ", ".join(deleted))
    return deleted
