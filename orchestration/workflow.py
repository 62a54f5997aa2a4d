"""The steps behind each subcommand, and the chain `all`: best hyperparameters → training → model → endpoint."""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sagemaker
from botocore.exceptions import ClientError

from . import endpoint, jobs, report, transform
from .backend import Backend, StepEnds
from .config import Settings
from .errors import UsageError, describe_aws_error

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One invocation: settings, where it runs, what earlier runs recorded, and what this run has started."""

    settings: Settings
    backend: Backend
    say: Callable[[str], None] = print
    state: dict[str, str] = field(default_factory=dict)
    started: dict[str, str] = field(default_factory=dict)  # resource → command that stops it

    @property
    def session(self) -> sagemaker.Session:
        return self.backend.session

    def step(self, command: str, *args: str) -> Any:
        """Run one step (STEPS[command]); where the backend skips it or ends it early, say why and return None."""
        try:
            self.backend.begin(command)
            return STEPS[command](self, *args)
        except StepEnds as end:
            if str(end):
                self.say(str(end))
            return None

    def new_name(self, kind: str) -> str:
        """Unique to the millisecond (tuning job names: at most 32 characters)."""
        now = datetime.now(UTC)
        return f"dogbreed-{kind}-{now:%y%m%d-%H%M%S}-{now.microsecond // 1000:03d}"

    def remember(self, **names: str) -> None:
        """Record job/endpoint names in WORKDIR/state.json so later commands default to them."""
        self.state.update(names)
        if self.backend.records:
            self.settings.workdir.mkdir(parents=True, exist_ok=True)
            self.settings.state_file.write_text(json.dumps(self.state, indent=2) + "\n")

    def recalled(self, name: str, flag: str) -> str:
        value = getattr(self.settings, name) or self.state.get(name, "")
        if not value:
            raise UsageError(f"{flag}: not given, and {self.settings.state_file} records none")
        return value

    def track(self, resource: str, stop_command: str) -> None:
        """Remember what this run started, so Ctrl-C can say how to stop it."""
        if self.backend.records:
            self.started[resource] = stop_command


def load_state(settings: Settings) -> dict[str, str]:
    try:
        return json.loads(settings.state_file.read_text())
    except (OSError, ValueError):
        return {}


def hpo(run: Run) -> None:
    """Start the tuning job, wait, print the trials and the best hyperparameters, write them for `train`."""
    settings = run.settings
    name = run.new_name("hpo")
    static = jobs.tuning_static_hyperparameters(settings)
    run.say(jobs.tuning_plan(static))
    jobs.start_tuning(settings, run.session, name, static, run.backend.data_channels())
    run.track(f"tuning job {name}", run.backend.stop_command("hyper-parameter-tuning-job", name))
    run.remember(tuning_job=name)
    description = run.backend.wait_tuning(name, run.say)
    run.started.pop(f"tuning job {name}")
    trials = jobs.trial_rows(_trials(run.session.sagemaker_client, name), settings.objective)
    result = jobs.tuning_result(description, trials, static)
    result.save(settings.best_hyperparameters_file)
    _print_trials(run, result)


def _trials(client, name: str) -> list[dict]:
    """Every trial's summary; the table is informational, so a failing listing only warns."""
    try:
        pages = client.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
            HyperParameterTuningJobName=name
        )
        return [s for page in pages for s in page.get("TrainingJobSummaries", [])]
    except ClientError as exc:
        log.warning("no trial table: %s", describe_aws_error(exc))
        return []


def _print_trials(run: Run, result: jobs.TuningResult) -> None:
    columns = ("job", "status", "objective", *jobs.HYPERPARAMETER_RANGES)
    run.say("  ".join(f"{c:<12}" if c != "job" else f"{c:<40}" for c in columns))
    if not result.trials:
        run.say("(no trials listed)")
    for row in result.trials:
        run.say("  ".join(f"{row.get(c)!s:<12}" if c != "job" else f"{row[c]:<40}" for c in columns))
    run.say(
        f"best training job: {result.best_training_job or 'none reported'} ({result.objective or 'no objective value'})"
    )
    run.say(f"best hyperparameters: {result.hyperparameters} → {run.settings.best_hyperparameters_file}")


def train(run: Run) -> str:
    """Start the training job with the best (or given) hyperparameters and wait for it; returns its name."""
    name = run.new_name("train")
    hyperparameters = jobs.training_hyperparameters(run.settings)
    run.say(f"training job {name} with hyperparameters {hyperparameters}")
    run.track(f"training job {name}", run.backend.stop_command("training-job", name))
    run.backend.start_training(name, hyperparameters)
    run.remember(training_job=name)
    run.backend.wait_training(name, run.say)
    run.started.pop(f"training job {name}", None)
    return name


def report_step(run: Run, job: str = "") -> None:
    """Download the job's tensors and rule outputs; write loss.png and report.md with the five verdicts."""
    job = job or run.recalled("training_job", "--training-job")
    out_dir = run.settings.workdir / job
    files = run.backend.fetch_run(job, out_dir)
    path, verdicts, advice = report.write_report(job, files, out_dir / "report")
    for verdict in verdicts:
        run.say(f"{verdict.rule:<28} {verdict.status:<8} {verdict.detail}")
    for line in advice:
        run.say(f"recommendation: {line}")
    run.say(f"report: {path}")


def deploy(run: Run, job: str = "") -> str:
    """Endpoint from the training job's model artifact; returns the endpoint name."""
    settings = run.settings
    job = job or run.recalled("training_job", "--training-job")
    name = settings.endpoint_name or run.new_name("ep")
    model_data = run.backend.model_artifact(job)
    run.say(f"deploying {model_data} to endpoint {name} ({settings.endpoint_instance_type})")
    run.track(f"endpoint {name}", f"python orchestrate.py cleanup --region {settings.region} --endpoint-name {name}")
    run.remember(endpoint_name=name)
    run.backend.deploy(model_data, name)
    run.backend.wait_endpoint(name, run.say)
    return name


def predict(run: Run, name: str = "") -> None:
    name = name or run.recalled("endpoint_name", "--endpoint-name")
    endpoint.predict(run.session, name, endpoint.samples(run.settings, run.session), run.say)


def cleanup(run: Run, name: str = "") -> None:
    name = name or run.recalled("endpoint_name", "--endpoint-name")
    endpoint.cleanup(run.session, name, run.say)
    run.started.pop(f"endpoint {name}", None)
    if run.state.get("endpoint_name") == name:
        run.state.pop("endpoint_name")
        run.remember()


def transform_step(run: Run) -> None:
    """Batch transform of --transform-input with the training job's model; one labelled line per image."""
    settings = run.settings
    model_data = run.backend.model_artifact(run.recalled("training_job", "--training-job"))
    name = run.new_name("tf")
    run.say(f"transform job {name}: {settings.transform_input} with {model_data} ({settings.transform_instance_type})")
    run.track(f"transform job {name}", run.backend.stop_command("transform-job", name))
    try:
        output = run.backend.start_transform(model_data, name)
        run.backend.wait_transform(name, run.say)
    except Exception:
        _delete_transform_model(run, name)  # the job failed: its model has no other use (Ctrl-C keeps both)
        raise
    _delete_transform_model(run, name)
    run.started.pop(f"transform job {name}")
    rows = transform.results(run.session, output)
    width = max(len("image"), *(len(row["image"]) for row in rows))  # full names: they are the files' keys
    run.say(f"{'image':<{width}}  {'predicted breed':<28} probability")
    for row in rows:
        shown = f"{row['breed'][:28]:<28} {float(row['probability']):.3f}" if not row["error"] else row["error"]
        run.say(f"{row['image']:<{width}}  {shown}")
    table = settings.workdir / name / "predictions.csv"
    transform.write_csv(rows, table)
    unread = sum(1 for row in rows if row["error"])
    run.say(f"{len(rows) - unread} images labelled, {unread} not readable: {table} (the container's answers: {output})")


def _delete_transform_model(run: Run, name: str) -> None:
    """The Model made for this transform job only, once the job has ended or failed to start."""
    try:
        run.session.sagemaker_client.delete_model(ModelName=name)
    except ClientError as exc:
        if "Could not find model" not in str(exc):  # the job failed before its model was created
            raise


def everything(run: Run) -> None:
    """hpo → train → report → deploy → predict → cleanup (unless --keep-endpoint)."""
    run.step("hpo")
    job = run.step("train")
    run.step("report", job)
    name = run.step("deploy", job)
    try:
        run.step("predict", name)
    finally:
        if not run.settings.keep_endpoint:
            run.step("cleanup", name)


STEPS: dict[str, Callable[[Run], object]] = {
    "hpo": hpo,
    "train": train,
    "report": report_step,
    "deploy": deploy,
    "predict": predict,
    "cleanup": cleanup,
    "transform": transform_step,
    "all": everything,
}
