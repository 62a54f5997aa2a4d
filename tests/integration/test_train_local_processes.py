"""Several training processes on one host (one per GPU; gloo processes on CPU): one model, written once."""

import json
import os
import re
import signal
import time

import pytest
import torch
from loopback import free_port
from train_support import children, group_alive, wait_for

from dogbreed import train
from dogbreed.distributed import local_processes
from dogbreed.errors import UserError
from dogbreed.hardware import usable_cpus

TWO = {"processes_per_host": "2"}
needs_two_cores = pytest.mark.skipif(usable_cpus() < 2, reason="processes_per_host=2 needs 2 cores on CPU")


def failure(base) -> str:
    return (base / "output" / "failure").read_text()


@pytest.mark.parametrize(
    ("requested", "gpus", "cores", "expected"),
    [(0, 0, 8, 1), (0, 1, 8, 1), (0, 4, 8, 4), (2, 0, 8, 2), (2, 4, 1, 2), (1, 4, 8, 1)],
)
def test_processes_per_host_auto_is_one_per_gpu(requested, gpus, cores, expected):
    assert local_processes(requested, gpus, cores) == expected


@pytest.mark.parametrize(
    ("requested", "gpus", "cores", "limit"), [(3, 2, 8, "2 CUDA devices"), (5, 0, 4, "4 CPU cores")]
)
def test_more_processes_than_devices_is_refused(requested, gpus, cores, limit):
    with pytest.raises(UserError, match=f"processes_per_host={requested} is more than the {limit}"):
        local_processes(requested, gpus, cores)


@pytest.mark.parametrize("value", ["-1", "two", str(usable_cpus() + 1)])
def test_bad_processes_per_host_fails_naming_the_key(sm_tree, value):
    base = sm_tree({"processes_per_host": value})
    assert train.main({"SAGEMAKER_BASE_DIR": str(base)}) == train.EXIT_USER_ERROR
    assert "processes_per_host=" in failure(base).splitlines()[0]
    assert not (base / "model").exists()


@needs_two_cores
def test_two_local_processes_train_one_model(sm_tree, run_train):
    base = sm_tree({**TWO, "epochs": "2", "fine_tune": "last_stage", "augment": "true", "batch_size": "4"}, per_class=8)
    result = run_train(base, MASTER_PORT=str(free_port()))

    assert result.returncode == 0, result.stdout + result.stderr
    log = result.stdout
    assert "starting 2 training processes per host: world size 2" in log
    assert re.search(r"joining gloo process group at 127\.0\.0\.1:\d+ as rank 0 of 2", log)
    # Only local rank 0 logs INFO: one metric line per epoch, one model, written by global rank 0.
    assert len(re.findall(r"\bepoch=\d+ train_loss=", log)) == 2
    assert log.count("model written to") == 1 and (base / "model" / "model.pt").is_file()
    assert sorted(p.name for p in (base / "checkpoints").iterdir()) == [
        "best.pt",
        "checkpoint-0001.pt",
        "checkpoint-0002.pt",
    ]


@needs_two_cores
def test_processes_stop_early_after_the_same_epoch(sm_tree, run_train):
    """Each process validates with its own BatchNorm statistics (fine_tune=all trains them); deciding on its own
    figures, one process stopped early while the other waited in the next epoch's collectives: the job failed
    (with this seed; the test splits into processes by DistributedSampler and is deterministic)."""
    hps = {**TWO, "epochs": "6", "fine_tune": "all", "patience": "1", "lr": "0.001", "batch_size": "8", "seed": "2"}
    base = sm_tree({**hps, "image_size": "32", "num_workers": "0"}, per_class=8)
    result = run_train(base, MASTER_PORT=str(free_port()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (base / "model" / "model.pt").is_file()


@needs_two_cores
def test_worker_user_error_reaches_the_failure_file(sm_tree, run_train):
    base = sm_tree(TWO, layout="none")  # the workers find no data; the launcher reports it
    result = run_train(base, MASTER_PORT=str(free_port()))
    assert result.returncode == train.EXIT_USER_ERROR, result.stdout
    assert failure(base).splitlines()[0].startswith("no training data: expected a 'train' channel")


@needs_two_cores
def test_sigterm_to_launcher_checkpoints_and_rerun_resumes(sm_tree, start_train, run_train):
    hps = {**TWO, "epochs": "4", "fine_tune": "head", "augment": "true", "batch_size": "4"}
    base = sm_tree(hps, per_class=40)
    process = start_train(base, MASTER_PORT=str(free_port()))
    wait_for("checkpoints/checkpoint-0001.pt", base)
    time.sleep(0.3)  # into epoch 2
    process.send_signal(signal.SIGTERM)
    log, _ = process.communicate(timeout=150)

    assert process.returncode == train.EXIT_STOPPED, log
    assert "forwarding SIGTERM to 2 local training processes" in log
    assert failure(base).startswith("training stopped by SIGTERM: checkpoint saved after")
    done = torch.load(sorted((base / "checkpoints").glob("checkpoint-*.pt"))[-1], weights_only=True)["epochs_done"]
    assert 1 <= done < 4 and "stopped" in json.loads((base / "model" / "model_config.json").read_text())["metrics"]

    rerun = run_train(base, MASTER_PORT=str(free_port()))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"after {done} completed epoch(s)" in rerun.stdout
    assert [int(e) for e in re.findall(r"\bepoch=(\d+) ", rerun.stdout)] == list(range(done + 1, 5))
    assert (base / "model" / "model.pt").is_file()


@needs_two_cores
def test_a_killed_launcher_is_reported_and_its_workers_end(sm_tree, start_train):
    """The kernel's out-of-memory killer sends SIGKILL, which no handler sees: `train`'s first process (which runs
    the job as a child) writes output/failure, ends the processes the job started and exits 137."""
    base = sm_tree({**TWO, "epochs": "50", "batch_size": "4"}, per_class=40)
    process = start_train(base, MASTER_PORT=str(free_port()))
    wait_for("checkpoints/checkpoint-0001.pt", base)
    (job,) = children(process.pid)
    assert len(children(job)) >= 2, "the job launched its two training processes"
    os.kill(job, signal.SIGKILL)
    log, _ = process.communicate(timeout=60)

    assert process.returncode == 128 + signal.SIGKILL, log
    assert "killed by SIGKILL" in failure(base) and "batch_size" in failure(base)
    assert not group_alive(job, timeout=2), "the training processes outlived their launcher"
    assert torch.load(base / "checkpoints" / "checkpoint-0001.pt", weights_only=True)["epochs_done"] == 1
