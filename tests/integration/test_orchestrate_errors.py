"""AWS failures and Ctrl-C: one readable line on stderr, a non-zero exit, no traceback."""

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from loopback import free_port
from moto_server import MotoServer, aws_environment
from orchestrate_support import IMAGE, REPO, REQUIRED, ROLE, Result, run_cli, upload_sample_data

pytest_plugins = ["moto_server"]  # the moto_process / aws fixtures


def assert_one_line(result: Result, expected_start: str, code: int = 1) -> None:
    assert result.code == code, result.err
    assert result.error_lines == [result.error_lines[0]]
    assert result.error_lines[0].startswith(expected_start), result.error_lines
    assert "Traceback" not in result.err


def test_aws_client_error_is_one_line(aws: MotoServer, capsys):
    result = run_cli(capsys, "deploy", "--image-uri", IMAGE, "--role-arn", ROLE, "--training-job", "no-such-job")
    assert_one_line(result, "orchestrate.py: error: AWS DescribeTrainingJob failed: ValidationException: ")


def test_cleanup_of_a_missing_endpoint_is_one_line(aws: MotoServer, capsys):
    result = run_cli(capsys, "cleanup", "--endpoint-name", "gone")
    assert_one_line(result, "orchestrate.py: error: AWS DescribeEndpoint failed: ValidationException: ")


def test_missing_credentials_is_one_line(aws: MotoServer, capsys, monkeypatch, tmp_path):
    upload_sample_data(tmp_path)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    result = run_cli(capsys, "train", *REQUIRED)
    assert_one_line(result, "orchestrate.py: error: AWS call failed: Unable to locate credentials")


def test_unreachable_endpoint_is_one_line(aws: MotoServer, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = run_cli(capsys, "train", *REQUIRED)
    assert_one_line(result, "orchestrate.py: error: AWS call failed: Could not connect to the endpoint URL")


def test_malformed_hyperparameters_file_is_one_line(aws: MotoServer, capsys, tmp_path):
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"lr": 0.1}))
    result = run_cli(capsys, "train", *REQUIRED, "--hyperparameters-file", str(best))
    assert_one_line(result, "orchestrate.py: error: --hyperparameters-file: ")
    assert aws.calls("CreateTrainingJob") == []


def test_unreadable_prediction_image_is_one_line(aws: MotoServer, capsys):
    result = run_cli(capsys, "predict", "--endpoint-name", "ep", "--images", "/nonexistent/dog.jpg")
    assert_one_line(result, "orchestrate.py: error: --images: cannot read /nonexistent/dog.jpg")


class _StallingProxy(BaseHTTPRequestHandler):
    """Forwards to moto, but holds DescribeTrainingJob until released: a job that is still running."""

    upstream = ""
    stalled = threading.Event()
    release = threading.Event()

    def do_POST(self) -> None:
        self._forward()

    def do_GET(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("X-Amz-Target") == "SageMaker.DescribeTrainingJob":
            self.stalled.set()
            self.release.wait(30)
        answer = requests.request(
            self.command, self.upstream + self.path, data=body, headers=dict(self.headers), timeout=30
        )
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args) -> None:
        """Quiet."""


@pytest.fixture
def stalling_proxy(aws: MotoServer) -> Iterator[str]:
    _StallingProxy.upstream = aws.url
    _StallingProxy.stalled.clear()
    _StallingProxy.release.clear()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _StallingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _StallingProxy.release.set()
    server.shutdown()


def test_ctrl_c_while_waiting_names_the_job_and_how_to_stop_it(aws: MotoServer, stalling_proxy: str, tmp_path: Path):
    upload_sample_data(tmp_path)
    process = subprocess.Popen(
        [sys.executable, str(REPO / "orchestrate.py"), "train", *REQUIRED, "--region", "us-east-1"],
        env={**aws_environment(stalling_proxy), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert _StallingProxy.stalled.wait(60), "orchestrate.py never asked for the job's status"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    (job,) = (c["TrainingJobName"] for c in aws.calls("CreateTrainingJob"))
    result = Result(process.returncode, out, err)
    assert_one_line(result, f"orchestrate.py: interrupted; still running: training job {job} ", code=130)
    assert f"aws sagemaker stop-training-job --training-job-name {job} --region us-east-1" in result.error_lines[0]
