"""orchestrate.py's entry point: parse inputs, run one step or the chain, turn every failure into one line."""

import logging
import sys
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from . import workflow
from .backend import backend_for
from .config import parse_settings
from .errors import OrchestrationError, UsageError, describe_aws_error

log = logging.getLogger(__name__)
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
# Progress worth seeing: ours, and the SDK's job names; local mode's container output is printed by the SDK.
# Not shown: telemetry notices, image-URI lookups, compose files, ping retries while a local endpoint boots.
LOG_LEVELS = {
    "orchestration": logging.INFO,
    "sagemaker": logging.INFO,
    "sagemaker.telemetry": logging.WARNING,
    "sagemaker.image_uris": logging.WARNING,
    "sagemaker.local": logging.WARNING,
    "sagemaker.local.utils": logging.ERROR,
    "urllib3": logging.ERROR,
}


def main(argv: list[str] | None = None, say: Callable[[str], None] = print) -> int:
    """The one error boundary: usage errors exit 2, AWS and workflow errors 1, Ctrl-C 130; no tracebacks."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name, level in LOG_LEVELS.items():
        logging.getLogger(name).setLevel(level)
    run = None
    try:
        settings = parse_settings(argv)
        with backend_for(settings, say) as backend:
            run = workflow.Run(settings, backend, say, workflow.load_state(settings))
            run.step(settings.command)
    except UsageError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    except OrchestrationError as exc:
        return _fail(f"error: {exc}", EXIT_FAILED)
    except (ClientError, BotoCoreError) as exc:
        return _fail(f"error: {describe_aws_error(exc)}", EXIT_FAILED)
    except (ValueError, RuntimeError) as exc:  # the SageMaker SDK's own checks (and local mode's Docker failures)
        log.debug("SDK failure", exc_info=True)
        return _fail(f"error: SageMaker SDK: {describe_aws_error(exc)}", EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail(_interrupted(run), EXIT_INTERRUPTED)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"orchestrate.py: {message}", file=sys.stderr)
    return code


def _interrupted(run: "workflow.Run | None") -> str:
    """Ctrl-C: nothing is stopped for the user; name what keeps running and how to stop it."""
    if run is None or not run.started:
        return "interrupted; nothing was left running"
    still = "; ".join(f"{what} (stop: {command})" for what, command in run.started.items())
    return f"interrupted; still running: {still}"
