"""Error taxonomy: what the user must fix vs. what is our bug, and HTTP errors for serving."""

import errno
import os


class UserError(Exception):
    """A problem the user can fix (bad hyperparameter, missing channel, missing weights).

    Training reports its message as the first line of output/failure, without a traceback.
    """


class ArtifactError(UserError):
    """The model directory does not hold a loadable artifact."""


class ServingError(Exception):
    """A request the server refuses; carries the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class UnsupportedMediaType(ServingError):
    status = 415


class NotAcceptable(ServingError):
    status = 406


class PayloadTooLarge(ServingError):
    status = 413


def describe(exc: OSError) -> str:
    """'no space left on device (ENOSPC)'; the OS's words, lower-cased, and the errno name."""
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno).lower()} ({errno.errorcode.get(exc.errno, exc.errno)})"


def no_temp_dir(exc: OSError) -> UserError:
    """torch and the servers need a temporary directory: a read-only root file system needs a tmpfs."""
    return UserError(
        f"no writable temporary directory ({exc}): mount one, e.g. docker run --tmpfs /tmp, "
        "or set TMPDIR to a writable one"
    )
