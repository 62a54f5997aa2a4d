"""Helpers for orchestrate.py tests: the CLI run in-process or as a script, and a sample dataset in (moto) S3."""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from local_test.make_sample_data import make_dataset
from orchestration.cli import main

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/dog-breed-classifier:1.0"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/dogbreed-sagemaker"
DATA_BUCKET, OUTPUT_BUCKET = "dogbreed-data", "dogbreed-output"
DATA_S3, OUTPUT_S3 = f"s3://{DATA_BUCKET}/dogImages", f"s3://{OUTPUT_BUCKET}/runs"
REQUIRED = ["--image-uri", IMAGE, "--role-arn", ROLE, "--data-s3", DATA_S3, "--output-s3", OUTPUT_S3]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        """stderr lines that are not log records: what the user is told."""
        return [line for line in self.err.splitlines() if line.startswith("orchestrate.py")]


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> Result:
    """orchestrate.py's main() in this process, with fast polling."""
    code = main([*argv, "--region", "us-east-1", "--poll-seconds", "0.05"])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def run_script(*argv: str, env: dict[str, str], timeout: float = 120, cwd: Path | None = None) -> Result:
    """orchestrate.py as a user runs it: a fresh Python process."""
    process = subprocess.run(
        [sys.executable, str(REPO / "orchestrate.py"), *argv],
        env={**os.environ, **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    return Result(process.returncode, process.stdout, process.stderr)


def upload_sample_data(tmp_path: Path, splits: tuple[str, ...] = ("train", "valid", "test")) -> Path:
    """Generated dogImages-layout images, uploaded to s3://dogbreed-data/dogImages; buckets created. With one split,
    its breed folders are uploaded without it: dogImages/<breed>/."""
    root = make_dataset(tmp_path / "dogImages", per_class=3, classes=3, size=(32, 32))
    s3 = boto3.client("s3")
    for bucket in (DATA_BUCKET, OUTPUT_BUCKET):
        s3.create_bucket(Bucket=bucket)
    top = root / splits[0] if len(splits) == 1 else root
    for split in splits:
        for path in sorted((root / split).rglob("*.jpg")):
            s3.upload_file(str(path), DATA_BUCKET, f"dogImages/{path.relative_to(top)}")
    return root
