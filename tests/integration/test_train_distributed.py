"""Two hosts (algo-1, algo-2) as two real processes on this machine: one DDP model, written only by algo-1."""

import re

from loopback import free_port
from train_support import FAST, write_tree

HOSTS = ["algo-2", "algo-1"]  # SageMaker does not promise order; the master is the first after sorting


def test_two_hosts_train_one_model_only_master_writes(tmp_path, start_train):
    hps = {**FAST, "epochs": "2", "fine_tune": "last_stage", "augment": "true", "batch_size": "4"}
    bases = {}
    for host in ("algo-1", "algo-2"):
        resources = {"current_host": host, "hosts": HOSTS, "network_interface_name": "lo"}
        bases[host] = write_tree(tmp_path / host, hps, per_class=8, resources=resources)
    port = str(free_port())
    processes = {h: start_train(b, MASTER_ADDR="127.0.0.1", MASTER_PORT=port) for h, b in bases.items()}
    logs = {h: p.communicate(timeout=300)[0] for h, p in processes.items()}

    for host, process in processes.items():
        assert process.returncode == 0, logs[host]
        assert f"as rank {int(host[-1]) - 1} of 2" in logs[host]
    assert (bases["algo-1"] / "model" / "model.pt").is_file()
    assert list((bases["algo-1"] / "checkpoints").glob("checkpoint-*.pt"))
    assert not (bases["algo-2"] / "model").exists() and not (bases["algo-2"] / "checkpoints").exists()
    # Training figures are summed across hosts, so both hosts log the same epoch lines.
    epoch_lines = {h: re.findall(r"epoch=\d+ train_loss=\S+ train_acc=\S+", log) for h, log in logs.items()}
    assert len(epoch_lines["algo-1"]) == 2 and epoch_lines["algo-1"] == epoch_lines["algo-2"]


def test_hosts_holding_different_data_fail_saying_so(tmp_path, start_train):
    """ShardedByS3Key gives each host part of the files: their DistributedSamplers then disagree on the number of
    batches, and the hosts fell out of step in their first collective (gloo's error, or a crash without a failure)."""
    bases = {}
    for host, per_class in (("algo-1", 8), ("algo-2", 6)):
        resources = {"current_host": host, "hosts": HOSTS, "network_interface_name": "lo"}
        bases[host] = write_tree(tmp_path / host, {**FAST, "epochs": "1"}, per_class=per_class, resources=resources)
    port = str(free_port())
    processes = {h: start_train(b, MASTER_ADDR="127.0.0.1", MASTER_PORT=port) for h, b in bases.items()}
    logs = {h: p.communicate(timeout=300)[0] for h, p in processes.items()}
    for host, base in bases.items():
        assert processes[host].returncode == 1, logs[host]
        failure = (base / "output" / "failure").read_text()
        assert failure.startswith("the hosts hold different data (rank 0: 4 classes, ") and "FullyReplicated" in failure
