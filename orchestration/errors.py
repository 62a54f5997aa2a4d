"""Errors the CLI turns into one readable line: bad inputs and AWS failures."""

from botocore.exceptions import BotoCoreError, ClientError


class OrchestrationError(Exception):
    """Something the user can act on; printed as one line, exit code 1."""


class UsageError(OrchestrationError):
    """A missing or malformed input, found before any AWS call; exit code 2."""


def describe_aws_error(exc: Exception) -> str:
    """One line for a botocore/SDK failure: operation, error code and AWS's own message."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = " ".join(str(error.get("Message", "")).split())[:300]
        return f"AWS {exc.operation_name} failed: {code}: {message}".rstrip(": ")
    if isinstance(exc, BotoCoreError):
        return f"AWS call failed: {' '.join(str(exc).split())}"
    return " ".join(str(exc).split())
