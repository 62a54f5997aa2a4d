"""Writing the job's outputs: write checks before any epoch, atomic writes, and OSError turned into a
UserError that names the directory and the cause (no space left, read-only) instead of a stack trace."""

import contextlib
import errno
import functools
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import torch

from .errors import UserError, describe

_FIXES = {
    errno.ENOSPC: "free space or give the job a larger volume",
    errno.EDQUOT: "free space or raise the quota",
    errno.EROFS: "mount it read-write",
    errno.EACCES: "make it writable for the training user",
    errno.EPERM: "make it writable for the training user",
    errno.ENOTDIR: "a file stands where the directory should be",
}


@contextlib.contextmanager
def writing(directory: Path, what: str) -> Iterator[None]:
    """Turn an OSError while writing `what` into directory into a UserError saying what to fix."""
    try:
        yield
    except OSError as exc:
        fix = _FIXES.get(exc.errno or 0, "check the directory")
        raise UserError(f"cannot write {what} to {directory}: {describe(exc)}; {fix}") from exc


P = ParamSpec("P")
R = TypeVar("R")


def reading_input(function: Callable[P, R]) -> Callable[P, R]:
    """function, with a PermissionError on an input folder or file turned into a UserError naming it and the fix
    (a job run as another user than the one who owns the data, docker run --user)."""

    @functools.wraps(function)
    def read(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except PermissionError as exc:
            raise UserError(
                f"cannot read {exc.filename}: {describe(exc)}; make it readable for the training user (uid "
                f"{os.getuid()})"
            ) from exc

    return read


def check_writable(directory: Path, what: str) -> None:
    """Write (then delete) a probe file in directory; UserError when that fails. Directories created for the
    probe are removed again: a failed job leaves no empty model/."""
    created = next((p for p in reversed([directory, *directory.parents]) if not p.exists()), None)
    with writing(directory, what):
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
        if created is not None:
            shutil.rmtree(created)


def write_atomically(target: Path, data: bytes) -> None:
    """Write via a temp file + rename: a kill or a full disk mid-write never leaves a torn target. The file is
    readable by all (mkstemp makes it 0600): the model may be served, or the checkpoints read, by another user."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path) -> Any:
    """torch.load onto the CPU with weights_only=True (tensors and plain containers, never code); any failure is a
    ValueError whose message is one line on the file, not PyTorch's advice to retry with weights_only=False."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for torn, foreign and unsafe files
        first_line = (str(exc).splitlines() or [""])[0]
        if first_line.startswith("Weights only load failed"):
            reason = "torn, or holds more than tensors (loaded with weights_only=True: never unpickled)"
        else:
            reason = f"torn, or not a PyTorch file ({type(exc).__name__}: {first_line[:200]})"
        raise ValueError(reason) from exc


def torch_bytes(obj: Any) -> bytes:
    """torch.save into memory, so that writing is plain file I/O with OSErrors (torch's own writer raises
    RuntimeErrors from C++ that hide the cause)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def json_bytes(obj: Any) -> bytes:
    """Indented, strict JSON (RFC 8259): a nan or inf figure, which json.dumps writes as a bare NaN that strict
    parsers refuse, is a ValueError instead."""
    return json.dumps(obj, indent=2, allow_nan=False).encode()
