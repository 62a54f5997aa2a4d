"""The one seam between the workflow and where it runs: SageMaker, SDK local mode, or a dry run that prints requests.

`backend_for` is the only place that reads --local and --dry-run to decide behaviour (config.py only checks that the
command combines with them); the steps in workflow.py call a Backend and read the same in all three.
"""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, Protocol
from urllib.parse import urlparse

import sagemaker

from dogbreed.contract.channels import TEST, TRAIN, VALID

from . import dataset, endpoint, jobs, report, sdk, transform
from .config import Settings
from .waiting import Watched, wait_for

Say = Callable[[str], None]


class StepEnds(Exception):
    """A step cannot go on with this backend (a dry run has no job to wait for); the message says why, if at all."""


class Backend(Protocol):
    """What the workflow's steps ask of where they run."""

    session: sagemaker.Session
    records: bool  # False in a dry run: nothing started, so nothing is remembered or tracked

    def begin(self, step: str) -> None: ...  # raises StepEnds for a step this backend skips
    def stop_command(self, kind: str, name: str) -> str: ...  # how the user stops a job (kind: training-job, ...)
    def start_training(self, name: str, hyperparameters: dict[str, str]) -> None: ...
    def wait_training(self, name: str, say: Say) -> None: ...
    def wait_tuning(self, name: str, say: Say) -> dict: ...
    def fetch_run(self, job: str, into: Path) -> report.RunFiles: ...
    def model_artifact(self, job: str) -> str: ...
    def deploy(self, model_data: str, name: str) -> None: ...
    def wait_endpoint(self, name: str, say: Say) -> None: ...
    def start_transform(self, model_data: str, name: str) -> str: ...
    def wait_transform(self, name: str, say: Say) -> None: ...


@contextlib.contextmanager
def backend_for(settings: Settings, say: Say = print) -> Iterator[Backend]:
    """The backend settings ask for; local mode's containers and working files go when the block ends."""
    if settings.local:
        with sdk.local_session(settings) as session:
            yield Local(settings, session)
    elif settings.dry_run:
        yield DryRun(settings, sdk.printing_session(settings, say))
    else:
        yield SageMaker(settings, sdk.aws_session(settings))


class SageMaker:
    """Jobs and endpoints on AWS: each request returns at once, then progress is polled until the resource is done."""

    records = True
    blocking = False  # whether the SDK's own calls wait for the job or endpoint
    skipped: ClassVar[dict[str, str]] = {}  # step → why this backend skips it

    def __init__(self, settings: Settings, session: sagemaker.Session):
        self.settings, self.session = settings, session

    def begin(self, step: str) -> None:
        if step in self.skipped:
            raise StepEnds(self.skipped[step])

    def stop_command(self, kind: str, name: str) -> str:
        return f"aws sagemaker stop-{kind} --{kind}-name {name} --region {self.settings.region}"

    def data_channels(self) -> dict[str, str]:
        """The training job's data channels: the split folders under --data-s3 (dataset.channels)."""
        return dataset.channels(self.settings.data_s3, self.session)

    def start_training(self, name: str, hyperparameters: dict[str, str]) -> None:
        estimator = jobs.training_estimator(self.settings, self.session, name, hyperparameters)
        estimator.fit(self.data_channels(), job_name=name, wait=False)

    def wait_training(self, name: str, say: Say) -> None:
        client = self.session.sagemaker_client
        watched = Watched(
            "training job", name, lambda: client.describe_training_job(TrainingJobName=name),
            "TrainingJobStatus", ("Completed",), lambda d: d.get("SecondaryStatus", ""),
        )  # fmt: skip
        wait_for(watched, self.settings.poll_seconds, say)

    def wait_tuning(self, name: str, say: Say) -> dict:
        client = self.session.sagemaker_client
        watched = Watched(
            "tuning job", name, lambda: client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
            "HyperParameterTuningJobStatus", ("Completed",),
            lambda d: ", ".join(f"{k} {v}" for k, v in (d.get("TrainingJobStatusCounters") or {}).items() if v),
        )  # fmt: skip
        return wait_for(watched, self.settings.poll_seconds, say)

    def fetch_run(self, job: str, into: Path) -> report.RunFiles:
        return report.fetch_run(self.session, job, into)

    def model_artifact(self, job: str) -> str:
        return endpoint.model_artifact(self.session, job)

    def deploy(self, model_data: str, name: str) -> None:
        endpoint.deploy(self.settings, self.session, model_data, name, blocking=self.blocking)

    def wait_endpoint(self, name: str, say: Say) -> None:
        self._until_in_service(name, say)
        say(f"endpoint {name} is in service")

    def _until_in_service(self, name: str, say: Say) -> None:
        endpoint.wait(self.settings, self.session, name, say)

    def start_transform(self, model_data: str, name: str) -> str:
        return transform.start(self.settings, self.session, model_data, name, blocking=self.blocking)

    def wait_transform(self, name: str, say: Say) -> None:
        transform.wait(self.settings, self.session, name, say)


class Local(SageMaker):
    """SDK local mode: the SDK runs each job and endpoint to completion in Docker; no tuner, no Debugger service."""

    blocking = True
    skipped: ClassVar[dict[str, str]] = {
        "hpo": "--local: tuning skipped (SageMaker's tuner has no local mode); training with the "
        "best-hyperparameters file when present, else --hp and the image's defaults"
    }

    def stop_command(self, kind: str, name: str) -> str:
        return "docker ps, then docker stop the job's algo-1 container"

    def start_training(self, name: str, hyperparameters: dict[str, str]) -> None:
        estimator = jobs.local_training_estimator(self.settings, self.session, name, hyperparameters)
        estimator.fit(jobs.local_channels(self.settings, self.data_channels(), name), job_name=name, wait=True)

    def wait_training(self, name: str, say: Say) -> None:
        """Nothing left to wait for: start_training ran the job."""

    def fetch_run(self, job: str, into: Path) -> report.RunFiles:
        return report.fetch_local_run(self.settings.output_s3, job, into)

    def model_artifact(self, job: str) -> str:
        return endpoint.local_model_artifact(self.settings.output_s3, job)

    def _until_in_service(self, name: str, say: Say) -> None:
        """Nothing left to wait for: deploy waited."""

    def start_transform(self, model_data: str, name: str) -> str:
        transform.check_local_input(Path(urlparse(self.settings.transform_input).path))
        return super().start_transform(model_data, name)

    def wait_transform(self, name: str, say: Say) -> None:
        """Nothing left to wait for: start_transform ran the job."""


class DryRun(SageMaker):
    """SageMaker's requests printed, none sent: nothing starts, so there is nothing to wait for, read or remember."""

    records = False
    skipped: ClassVar[dict[str, str]] = {
        "report": "dry run: no report (it reads a finished job's tensors)",
        "predict": "dry run: no predictions (they need a live endpoint)",
    }

    def data_channels(self) -> dict[str, str]:
        """Nothing is listed: the channels of the dogImages layout (train/ valid/ test/ under --data-s3)."""
        return {name: f"{self.settings.data_s3.rstrip('/')}/{name}" for name in (TRAIN, VALID, TEST)}

    def wait_training(self, name: str, say: Say) -> None:
        """No job: the chain goes on with its name."""

    def wait_tuning(self, name: str, say: Say) -> dict:
        raise StepEnds("")

    def model_artifact(self, job: str) -> str:
        """Where SageMaker would put the job's model."""
        default = f"{self.settings.output_s3 or 's3://OUTPUT'}/{job}/output/model.tar.gz"
        return endpoint.model_artifact(self.session, job, default)

    def wait_endpoint(self, name: str, say: Say) -> None:
        """No endpoint: the chain goes on with its name."""

    def wait_transform(self, name: str, say: Say) -> None:
        raise StepEnds("")
