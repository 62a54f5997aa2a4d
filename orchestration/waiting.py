"""Waiting for SageMaker resources: one progress line per status change, failures with SageMaker's reason."""

import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import OrchestrationError

TERMINAL_FAILURES = ("Failed", "Stopped")


def _no_detail(_: dict) -> str:
    return ""


@dataclass(frozen=True)
class Watched:
    """One resource to wait for: how to describe it, which field holds its status, what else to show."""

    kind: str
    name: str
    describe: Callable[[], dict]
    status_key: str
    done: tuple[str, ...]
    detail: Callable[[dict], str] = _no_detail


def wait_for(watched: Watched, poll_seconds: float, say: Callable[[str], None] = print) -> dict:
    """Poll until a terminal status; return the last description, or raise with the failure reason."""
    started, last = time.monotonic(), None
    while True:
        description = watched.describe()
        status = description.get(watched.status_key, "Unknown")
        line = " / ".join(filter(None, (status, watched.detail(description))))
        if line != last:
            say(f"[{_elapsed(started)}] {watched.kind} {watched.name}: {line}")
            last = line
        if status in watched.done:
            return description
        if status in TERMINAL_FAILURES:
            reason = description.get("FailureReason", "no reason given")
            raise OrchestrationError(f"{watched.kind} {watched.name} {status.lower()}: {reason}")
        time.sleep(poll_seconds)


def _elapsed(started: float) -> str:
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    return f"{minutes:02d}m{seconds:02d}s"
