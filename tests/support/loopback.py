"""Loopback helpers shared by the integration and container tests: the only network target tests use."""

import socket


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (servers, registries, torch.distributed rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
