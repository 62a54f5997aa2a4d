"""Multi-host, multi-process training: torch.distributed process group, device and thread setup.

resourceconfig.json lists the hosts; processes_per_host processes run on each (one per GPU), so
world size = hosts * processes_per_host and global rank = host index * processes_per_host + local rank.
"""

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

from .errors import UserError
from .sm_env import TrainingEnv

log = logging.getLogger(__name__)

DEFAULT_PORT = 29500
INIT_TIMEOUT = datetime.timedelta(minutes=10)
CPU = torch.device("cpu")


class Local(NamedTuple):
    """This process's place on its host: local rank among `size` training processes."""

    rank: int = 0
    size: int = 1


ONE_PROCESS = Local()


@dataclass(frozen=True)
class Cluster:
    """This process's place in the job: global rank among all processes of all hosts, and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = CPU
    local_processes: int = 1  # of this job on this host (they share its memory and /dev/shm)

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def shard(self) -> tuple[int, int] | None:
        return (self.rank, self.world_size) if self.distributed else None

    def sum(self, totals: torch.Tensor) -> torch.Tensor:
        """Sum a tensor across processes (identity when there is one)."""
        if self.distributed:
            totals = totals.clone()
            dist.all_reduce(totals)
        return totals

    def any(self, flag: bool) -> bool:
        """True in every process when it is true in any (so all processes stop at the same batch)."""
        if not self.distributed:
            return flag
        return bool(self.sum(torch.tensor([float(flag)])).item())

    def gather(self, obj: Any) -> list[Any]:
        """Every process's object, by rank, in every process."""
        if not self.distributed:
            return [obj]
        objects: list[Any] = [None] * self.world_size
        dist.all_gather_object(objects, obj)
        return objects

    def broadcast(self, obj: Any) -> Any:
        """The master's object in every process."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def is_master_host(env: TrainingEnv) -> bool:
    """Whether this host runs global rank 0 (see cluster()), the one process that writes the model and checkpoints."""
    return env.current_host == env.hosts[0]


def master_address(env: TrainingEnv) -> tuple[str, int]:
    """The master host (SageMaker resolves algo-1 …), loopback on one host, unless the environment overrides it."""
    default = env.hosts[0] if len(env.hosts) > 1 else "127.0.0.1"
    return env.master_addr or default, env.master_port or DEFAULT_PORT


def local_processes(requested: int, cuda_devices: int, cores: int) -> int:
    """Training processes on this host: as asked, else (0) one per CUDA device; at most one per device or core."""
    if requested == 0:
        return max(cuda_devices, 1)
    limit, unit = (cuda_devices, "CUDA devices") if cuda_devices else (cores, "CPU cores")
    if requested > limit:
        raise UserError(
            f"hyperparameter processes_per_host={requested} is more than the {limit} {unit} of this host: "
            f"use at most {limit}, or 0 for one process per CUDA device (one on CPU)"
        )
    return requested


@contextlib.contextmanager
def cluster(env: TrainingEnv, local: Local = ONE_PROCESS) -> Iterator[Cluster]:
    """Join the process group when the job has several processes (hosts * local processes); leave it afterwards."""
    device = torch.device("cuda", local.rank) if torch.cuda.is_available() else CPU
    if device.type == "cuda":
        torch.cuda.set_device(device)
    world_size = len(env.hosts) * local.size
    if world_size == 1:
        yield Cluster(device=device)
        return
    rank = env.hosts.index(env.current_host) * local.size + local.rank
    address, port = master_address(env)
    if env.network_interface:  # SageMaker names the interface hosts talk over (eth0)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", env.network_interface)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", env.network_interface)
    backend = "nccl" if device.type == "cuda" else "gloo"
    log.info("joining %s process group at %s:%d as rank %d of %d", backend, address, port, rank, world_size)
    dist.init_process_group(
        backend, init_method=f"tcp://{address}:{port}", rank=rank, world_size=world_size, timeout=INIT_TIMEOUT
    )
    try:
        yield Cluster(rank=rank, world_size=world_size, device=device, local_processes=local.size)
    finally:
        dist.destroy_process_group()
