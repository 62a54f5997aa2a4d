"""Batch transform: label every image under an S3 prefix (or, with --local, a folder) with a trained model.

One request per image (SingleRecord, application/x-image: any format the container reads), answered with the
container's labelled JSON (or, for an image it cannot read, {"error"}); SageMaker writes it to
OUTPUT/transform/JOB/<image>.out, which this module reads back into one row per image (results) for the workflow to
print and write to WORKDIR/JOB/predictions.csv (write_csv).

The strategy is always passed: the container's /execution-parameters answers in the service's documented form
("MULTI_RECORD", as SageMaker's own containers do), which SageMaker reads, but the SDK's local mode accepts only
the API's spelling ("MultiRecord"/"SingleRecord") and raises "Invalid Batch Strategy" on it when left to ask.
"""

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import sagemaker
from sagemaker.model import Model

from .config import Settings
from .endpoint import ACCEPT_LABELLED
from .errors import OrchestrationError, UsageError
from .waiting import Watched, wait_for

CONTENT_TYPE = "application/x-image"
STRATEGY = "SingleRecord"  # one image per request: images are binary files, not records to split or join
MAX_PAYLOAD_MB = 6


def check_local_input(folder: Path) -> None:
    """The SDK's local batch transform labels only the files directly in the folder: say so before it labels none."""
    if not folder.is_dir():
        raise UsageError(f"--transform-input: {folder} is not a directory")
    if any(path.is_file() for path in folder.iterdir()):
        return
    nested = next((path for path in folder.rglob("*") if path.is_file()), None)
    where = f"; its files are in subfolders such as {nested.parent}" if nested else ""
    raise UsageError(
        f"--transform-input: {folder} holds no files: SageMaker's local mode labels only the files directly in the "
        f"folder, not in subfolders{where}"
    )


def start(settings: Settings, session: sagemaker.Session, model_data: str, name: str, blocking: bool) -> str:
    """Create the model and the transform job (blocking: until it ends); the output URI."""
    model = Model(
        image_uri=settings.image_uri, model_data=model_data, role=settings.role_arn, name=name,
        sagemaker_session=session,
    )  # fmt: skip
    output = settings.transform_output or f"{settings.output_s3}/transform/{name}"
    transformer = model.transformer(
        instance_count=1,
        instance_type=settings.transform_instance_type,
        strategy=STRATEGY,
        max_payload=MAX_PAYLOAD_MB,
        accept=ACCEPT_LABELLED,
        output_path=output,
    )
    transformer.transform(
        settings.transform_input, content_type=CONTENT_TYPE, split_type=None, job_name=name, wait=blocking,
        logs=False,
    )  # fmt: skip
    return output


def wait(settings: Settings, session: sagemaker.Session, name: str, say: Callable[[str], None]) -> None:
    client = session.sagemaker_client
    wait_for(
        Watched(
            "transform job", name, lambda: client.describe_transform_job(TransformJobName=name),
            "TransformJobStatus", ("Completed",),
        ),
        settings.poll_seconds,
        say,
    )  # fmt: skip


COLUMNS = ("image", "label", "breed", "probability", "error")


def results(session: sagemaker.Session, output: str) -> list[dict[str, str]]:
    """One row per image: its name (relative to the input prefix) and the top class of the container's answer, or
    why the container could not read it (in a transform job it answers such an image {"error"}: serving.app)."""
    rows = [_row(name, body) for name, body in sorted(_outputs(session, output))]
    if not rows:
        raise OrchestrationError(f"the transform job wrote no answers under {output}")
    return rows


def _row(name: str, body: bytes) -> dict[str, str]:
    try:
        answer = json.loads(body)
        if "error" in answer:
            return {"image": name, "label": "", "breed": "", "probability": "", "error": answer["error"]}
        best = answer["predictions"][0]
        return {"image": name, **{key: best[key] for key in ("label", "breed", "probability")}, "error": ""}
    except (ValueError, KeyError, IndexError, TypeError):
        raise OrchestrationError(f"transform output {name}.out is not a labelled answer: {body[:200]!r}") from None


def _outputs(session: sagemaker.Session, output: str) -> Iterator[tuple[str, bytes]]:
    parsed = urlparse(output)
    if parsed.scheme == "file":
        root = Path(parsed.path)
        for path in root.rglob("*.out"):
            yield str(path.relative_to(root))[: -len(".out")], path.read_bytes()
        return
    s3, prefix = session.boto_session.client("s3"), parsed.path.lstrip("/") + "/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".out"):
                body = s3.get_object(Bucket=parsed.netloc, Key=item["Key"])["Body"].read()
                yield item["Key"][len(prefix) : -len(".out")], body


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as sink:
        writer = csv.DictWriter(sink, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
