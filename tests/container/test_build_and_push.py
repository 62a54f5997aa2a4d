"""build_and_push.sh pushes to a real registry on 127.0.0.1, with ECR and STS served by moto over HTTP."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from conftest import ROOT, run
from loopback import free_port
from moto_server import MotoServer, aws_environment

SCRIPT = str(ROOT / "build_and_push.sh")
VENV_BIN = Path(sys.executable).parent

pytest_plugins = ["moto_server"]  # the moto_process fixture


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} exited {process.returncode}"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry (distribution 2.8) on loopback."""
    root, port = tmp_path_factory.mktemp("registry"), free_port()
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_listening(port, process)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    # The pushes' local tags and the registry's copy (GBs each) would otherwise outlive the run.
    pushed = run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"127.0.0.1:{port}/*"])
    run(["docker", "rmi", *pushed.stdout.split()], check=False)
    shutil.rmtree(root / "data", ignore_errors=True)


@pytest.fixture(scope="module")
def aws_env(moto_process: MotoServer) -> dict[str, str]:
    """moto on loopback as AWS, emptied; the environment that points boto3 and the aws CLI at it."""
    moto_process.fresh()
    return aws_environment(moto_process.url)


def push(env: dict[str, str], *, path: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env, "PATH": path or f"{VENV_BIN}:{os.environ['PATH']}"}
    return run([SCRIPT], env=full_env, check=check, timeout=3000)


def ecr_repositories(env: dict[str, str]) -> list[dict]:
    client = boto3.client(
        "ecr",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client.describe_repositories()["repositories"]


def test_push_creates_repository_and_pushes_both_tags(image: str, registry: str, aws_env: dict) -> None:
    env = {**aws_env, "ECR_REGISTRY": registry}
    first = push(env)
    assert first.stdout.strip().splitlines()[-1] == f"{registry}/dog-breed-classifier:latest"
    [repository] = ecr_repositories(aws_env)
    assert repository["repositoryName"] == "dog-breed-classifier"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}

    second = push(env)  # the repository exists now: no creation, still a push
    assert "creating ECR repository" not in second.stderr
    assert second.stdout.strip().splitlines()[-1] == f"{registry}/dog-breed-classifier:latest"

    commit = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).stdout.strip()
    for tag in ("latest", commit):
        reference = f"{registry}/dog-breed-classifier:{tag}"
        run(["docker", "rmi", reference])
        run(["docker", "pull", reference])
        pulled = run(["docker", "image", "inspect", "--format", "{{.Id}}", reference]).stdout
        assert pulled == run(["docker", "image", "inspect", "--format", "{{.Id}}", image]).stdout


def tools_dir(tmp_path: Path, *names: str) -> str:
    """A PATH holding only the named tools (plus what bash itself needs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "dirname", *names):
        found = subprocess.run(["bash", "-c", f"command -v {name}"], capture_output=True, text=True, check=True)
        (bin_dir / name).symlink_to(found.stdout.strip())
    return str(bin_dir)


@pytest.mark.parametrize(
    ("tools", "message"),
    [((), "docker CLI not found"), (("docker",), "aws CLI not found")],
)
def test_missing_tool_stops_with_one_line(tmp_path: Path, aws_env: dict, tools: tuple, message: str) -> None:
    result = push(aws_env, path=tools_dir(tmp_path, *tools), check=False)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"build_and_push: error: {message}")


def test_failed_login_stops_before_any_push(image: str, aws_env: dict) -> None:
    dead_registry = f"127.0.0.1:{free_port()}"
    result = push({**aws_env, "ECR_REGISTRY": dead_registry}, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == f"build_and_push: error: docker login to {dead_registry} failed"
    assert "pushed" not in result.stderr
