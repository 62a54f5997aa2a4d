"""A real `moto_server` process on 127.0.0.1 standing in for AWS, and the requests its recorder saw.

Test modules load this as a plugin (pytest_plugins) after importing its helpers, hence PYTEST_DONT_REWRITE.
"""

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from loopback import free_port

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
REGION = "us-east-1"


@dataclass(frozen=True)
class MotoServer:
    """The server's URL, its admin API (reset, recorder, canned endpoint answers) and its recording."""

    url: str

    def admin(self, path: str, payload: dict | None = None) -> requests.Response:
        response = requests.post(f"{self.url}/moto-api/{path}", json=payload, timeout=10)
        response.raise_for_status()
        return response

    def fresh(self) -> None:
        """Forget all AWS state and all recorded requests; record from now on."""
        self.admin("reset")
        self.admin("recorder/reset-recording")
        self.admin("recorder/start-recording")

    def recorded(self) -> list[dict]:
        """Every request since `fresh()`: method, url, headers and the decoded body."""
        text = requests.get(f"{self.url}/moto-api/recorder/download-recording", timeout=10).text
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        for entry in entries:
            body = entry.get("body") or ""
            entry["body"] = base64.b64decode(body) if entry.get("body_encoded") else body
        return entries

    def calls(self, operation: str) -> list[dict]:
        """JSON bodies of the SageMaker requests for one operation (e.g. CreateTrainingJob), in order."""
        return [
            json.loads(entry["body"])
            for entry in self.recorded()
            if entry["headers"].get("X-Amz-Target") == f"SageMaker.{operation}"
        ]

    def operations(self) -> list[str]:
        return [e["headers"]["X-Amz-Target"].split(".")[-1] for e in self.recorded() if "X-Amz-Target" in e["headers"]]


def aws_environment(url: str) -> dict[str, str]:
    """What points boto3 and the SDK at the server: endpoint URL, fake credentials, region, no config files."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for credentials
        **FAKE_CREDENTIALS,
    }


@pytest.fixture(scope="session")
def moto_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """Start moto_server once per test session on a free loopback port; stop it (by pid) at the end."""
    port = free_port()
    # The recorder's file defaults to ./moto_recording: give each server its own, outside the repository.
    recording = tmp_path_factory.mktemp("moto") / "recording.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MOTO_RECORDER_FILEPATH": str(recording)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = MotoServer(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{server.url}/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)
    yield server
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def aws(moto_process: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoServer:
    """A clean moto with recording on, and this process's environment pointed at it."""
    moto_process.fresh()
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in aws_environment(moto_process.url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return moto_process
