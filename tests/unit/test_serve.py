"""serve: what `serve` says at start-up, before it runs nginx and the model server."""

import logging
import tempfile

from dogbreed.hardware import Machine
from dogbreed.serve import main, plan_server
from dogbreed.sm_env import ServingEnv


def test_without_a_writable_temporary_directory_serve_says_to_mount_one(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))  # as on a read-only root without a tmpfs
    with caplog.at_level(logging.ERROR, logger="dogbreed.serve"):
        assert main([]) == 1
    [line] = caplog.messages
    assert line.startswith("cannot start the model server: no writable temporary directory")
    assert str(tmp_path / "missing") in line
    assert line.endswith("mount one, e.g. docker run --tmpfs /tmp, or set TMPDIR to a writable one")


def host(cpus: int, memory_gib: int) -> Machine:
    return Machine(cpus=cpus, memory_bytes=memory_gib << 30, gpus=0, cpu_flags=frozenset())


def test_more_workers_than_memory_holds_are_warned_about_naming_the_variable(caplog):
    env = ServingEnv.from_environ({"SAGEMAKER_MODEL_SERVER_WORKERS": "64"})
    with caplog.at_level(logging.WARNING, logger="dogbreed.serve"):
        plan = plan_server(env, host(cpus=2, memory_gib=6))
    assert plan.workers == 64  # an estimate with headroom: what was asked for is tried
    assert (
        "SAGEMAKER_MODEL_SERVER_WORKERS=64: 64 workers x 2 GiB exceed the 6.0 GiB of memory here: "
        "expect workers to be killed when it runs out (3 fit)"
    ) in caplog.messages


def test_workers_that_fit_in_memory_are_not_warned_about(caplog):
    env = ServingEnv.from_environ({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
    with caplog.at_level(logging.WARNING, logger="dogbreed.serve"):
        plan_server(env, host(cpus=12, memory_gib=6))
    assert caplog.messages == []
