"""Multi-host training from resourceconfig.json: torch.distributed process group, device and thread setup."""

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .sm_env import TrainingEnv

log = logging.getLogger(__name__)

DEFAULT_PORT = 29500
INIT_TIMEOUT = datetime.timedelta(minutes=10)
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Cluster:
    """This process's place in the job: rank among hosts (one process per host) and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = CPU

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
        """Sum a tensor across hosts (identity on one host)."""
        if self.distributed:
            totals = totals.clone()
            dist.all_reduce(totals)
        return totals

    def any(self, flag: bool) -> bool:
        """True on every host when it is true on any (so all hosts stop at the same batch)."""
        if not self.distributed:
            return flag
        return bool(self.sum(torch.tensor([float(flag)])).item())

    def broadcast(self, obj: Any) -> Any:
        """The master's object on every host."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def master_address(env: TrainingEnv, environ: Mapping[str, str]) -> tuple[str, int]:
    """SageMaker resolves host names (algo-1 …); SM_MASTER_ADDR/MASTER_ADDR override it (local tests)."""
    address = environ.get("SM_MASTER_ADDR") or environ.get("MASTER_ADDR") or env.hosts[0]
    port = int(environ.get("SM_MASTER_PORT") or environ.get("MASTER_PORT") or DEFAULT_PORT)
    return address, port


def choose_threads(requested: int) -> int:
    """Intra-op threads: as asked, else the cores this process may run on (one training process per host)."""
    if requested:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def cluster(env: TrainingEnv, environ: Mapping[str, str] = os.environ) -> Iterator[Cluster]:
    """Join the process group when resourceconfig lists several hosts; leave it afterwards."""
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if len(env.hosts) == 1:
        yield Cluster(device=device)
        return
    rank, world_size = env.hosts.index(env.current_host), len(env.hosts)
    address, port = master_address(env, environ)
    if env.network_interface:  # SageMaker names the interface hosts talk over (eth0)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", env.network_interface)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", env.network_interface)
    backend = "nccl" if device.type == "cuda" else "gloo"
    log.info("joining %s process group at %s:%d as rank %d of %d", backend, address, port, rank, world_size)
    dist.init_process_group(
        backend, init_method=f"tcp://{address}:{port}", rank=rank, world_size=world_size, timeout=INIT_TIMEOUT
    )
    try:
        yield Cluster(rank=rank, world_size=world_size, device=device)
    finally:
        dist.destroy_process_group()
