"""The training report: fetch tensors and rule outputs, plot the losses, judge the five rules, write Markdown."""

import json
import logging
import shutil
import tarfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

import sagemaker
from botocore.exceptions import ClientError

from dogbreed.advice import recommendations

from . import rules
from .errors import OrchestrationError
from .rules import RunTensors

log = logging.getLogger(__name__)

PROFILER_REPORTS = "profiler-reports/"
TRAINING_METRICS = Path("output") / "data" / "metrics.json"  # in the job's output.tar.gz (dogbreed.reporting)
CONFUSION_PLOT = Path("output") / "data" / "confusion.png"


@dataclass(frozen=True)
class RunFiles:
    """What a finished training job left behind, on this machine."""

    description: dict
    tensors_dir: Path | None = None
    profiler_reports: dict[str, dict] = field(default_factory=dict)
    output_dir: Path | None = None  # the job's unpacked output.tar.gz (output/data: metrics.json, confusion.png)

    @cached_property
    def training_metrics(self) -> dict:
        """The training job's metrics.json (read once): epochs, final, per_class; {} when the job wrote none."""
        path = self.output_dir / TRAINING_METRICS if self.output_dir else None
        return json.loads(path.read_text()) if path and path.is_file() else {}


def fetch_run(session: sagemaker.Session, job: str, into: Path) -> RunFiles:
    """Describe the job; download its Debugger tensors and ProfilerReport outputs."""
    into.mkdir(parents=True, exist_ok=True)  # the output archive lands here even when there are no tensors
    description = session.sagemaker_client.describe_training_job(TrainingJobName=job)
    s3 = session.boto_session.client("s3")
    hook = description.get("DebugHookConfig") or {}
    tensors = (
        _download(s3, f"{hook['S3OutputPath'].rstrip('/')}/{job}/debug-output", into / "tensors") if hook else None
    )
    output = description.get("OutputDataConfig", {}).get("S3OutputPath", "").rstrip("/")
    reports = _profiler_reports(s3, f"{output}/{job}/rule-output") if output else {}
    unpacked = _output_archive(s3, f"{output}/{job}/output/output.tar.gz", into) if output else None
    return RunFiles(description, tensors, reports, unpacked)


def _output_archive(s3, uri: str, into: Path) -> Path | None:
    """SageMaker tars /opt/ml/output/data into JOB/output/output.tar.gz; unpacked as into/output/data."""
    parsed = urlparse(uri)
    archive = into / "output.tar.gz"
    try:
        s3.download_file(parsed.netloc, parsed.path.lstrip("/"), str(archive))
    except ClientError as exc:
        log.warning("no training output at %s (%s): no per-class accuracy in the report", uri, exc)
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(into / "output" / "data", filter="data")
    return into


def fetch_local_run(output_uri: str, job: str, into: Path) -> RunFiles:
    """Local mode tars /opt/ml/output (tensors included) into OUTPUT/JOB/output.tar.gz; unpack it."""
    archive = Path(urlparse(output_uri).path) / job / "output.tar.gz"
    if not archive.is_file():
        raise OrchestrationError(f"--training-job: no local output at {archive}")
    with tarfile.open(archive) as tar:
        tar.extractall(into / "output", filter="data")
    tensors = into / "output" / "tensors"
    status = {"TrainingJobStatus": "Completed (local mode)"}
    return RunFiles(status, tensors if tensors.is_dir() else None, output_dir=into)


def _objects(s3, uri: str) -> list[tuple[str, str]]:
    parsed = urlparse(uri)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/") + "/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [(bucket, item["Key"]) for page in pages for item in page.get("Contents", [])]


def _download(s3, uri: str, into: Path) -> Path | None:
    objects = _objects(s3, uri)
    prefix = urlparse(uri).path.lstrip("/") + "/"
    for bucket, key in objects:
        target = into / key[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    log.info("downloaded %d tensor files from %s", len(objects), uri)
    return into if objects else None


def _profiler_reports(s3, uri: str) -> dict[str, dict]:
    """ProfilerReport's per-rule JSON summaries (profiler-output/profiler-reports/*.json), when the rule ran."""
    reports = {}
    for bucket, key in _objects(s3, uri):
        if PROFILER_REPORTS in key and key.endswith(".json"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            reports[Path(key).stem] = json.loads(body)
    return reports


def plot_losses(run: RunTensors, path: Path) -> Path:
    """Training and validation loss against their steps, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for label, series in (("train", run.train_loss), ("validation", run.eval_loss)):
        if series.values:
            axes.plot(series.steps, series.values, label=f"{label} loss")
    axes.set(xlabel="step (per mode)", ylabel="loss", title="Cross-entropy loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]


def advise(files: RunFiles, verdicts: list[rules.Verdict]) -> list[str]:
    """Recommendations from the training curves, the test split's per-class accuracy and the fired rules."""
    trained = files.training_metrics
    fired = [v.rule for v in verdicts if v.status == rules.FIRED]
    return recommendations(trained.get("epochs", []), fired, trained.get("per_class"))


def markdown(job: str, files: RunFiles, verdicts: list[rules.Verdict], plot: Path | None, advice: list[str]) -> str:
    """The report: metrics, loss plot, local verdicts beside managed rule statuses, the delivered model on the
    test split (per class, confusion matrix), recommendations, profiler summary."""
    description = files.description
    managed = {
        s["RuleConfigurationName"]: s.get("RuleEvaluationStatus", "")
        for s in description.get("DebugRuleEvaluationStatuses") or []
    }
    lines = [f"# Training report: {job}", "", f"Status: {description.get('TrainingJobStatus', 'unknown')}", ""]
    metrics = description.get("FinalMetricDataList") or []
    lines += [
        "## Final metrics",
        "",
        *_table(("metric", "value"), [(m["MetricName"], m["Value"]) for m in metrics]),
        "",
    ]
    lines += ["## Loss", "", f"![loss]({plot.name})" if plot else "No loss tensors were saved.", ""]
    rows = [(v.rule, v.status, managed.get(_managed_name(v.rule), "not reported"), v.detail) for v in verdicts]
    lines += ["## Debugger rules", "", *_table(("rule", "local check", "managed rule", "evidence"), rows), ""]
    lines += ["## Delivered model on the test split", "", *_test_split_lines(files.training_metrics), ""]
    lines += ["## Recommendations", "", *(f"- {line}" for line in advice), ""]
    lines += ["## Profiler", "", *_profiler_lines(description, files.profiler_reports), ""]
    return "\n".join(lines)


def _test_split_lines(trained: dict) -> list[str]:
    """Which epoch was delivered, its test accuracy, per-class accuracy (weakest first) and the confusion matrix."""
    if not trained:
        return ["The training job left no output/data/metrics.json."]
    final = trained.get("final", {})
    lines = [
        f"Epoch {final.get('best_epoch', '?')} of {final.get('epochs', '?')} (by {final.get('select_by', '?')}): "
        f"valid_acc {final.get('valid_acc', '?')}, test_acc {final.get('test_acc', 'no test split')}",
        "",
    ]
    per_class = trained.get("per_class") or {}
    ranked = sorted(per_class.items(), key=lambda item: item[1]["accuracy"])
    lines += _table(("class", "test accuracy", "images"), [(n, c["accuracy"], c["count"]) for n, c in ranked])
    return [*lines, "", f"![confusion matrix]({CONFUSION_PLOT.name})" if per_class else ""]


def _managed_name(rule: str) -> str:
    """rule_configs.loss_not_decreasing() is named LossNotDecreasing in the job."""
    return "".join(part.capitalize() for part in rule.split("_"))


def _profiler_lines(description: dict, reports: dict[str, dict]) -> list[str]:
    statuses = [
        (s["RuleConfigurationName"], s.get("RuleEvaluationStatus", ""))
        for s in description.get("ProfilerRuleEvaluationStatuses") or []
    ]
    lines = [*_table(("profiler rule", "status"), statuses), ""] if statuses else []
    if not reports:
        return [*lines, "No ProfilerReport output found."]
    rows = [
        (name, r.get("RuleTriggered", ""), r.get("Violations", ""), r.get("Datapoints", ""))
        for name, r in sorted(reports.items())
    ]
    return lines + _table(("check", "triggered", "violations", "datapoints"), rows)


def write_report(job: str, files: RunFiles, out_dir: Path) -> tuple[Path, list[rules.Verdict], list[str]]:
    """Read the tensors, judge the rules, plot, and write out_dir/report.md; returns its path, the verdicts and
    the recommendations."""
    from .tensors import read_run

    out_dir.mkdir(parents=True, exist_ok=True)
    run = read_run(files.tensors_dir) if files.tensors_dir else RunTensors()
    verdicts = rules.evaluate(run)
    plot = plot_losses(run, out_dir / "loss.png") if run.train_loss.values or run.eval_loss.values else None
    if files.output_dir and (files.output_dir / CONFUSION_PLOT).is_file():
        shutil.copy(files.output_dir / CONFUSION_PLOT, out_dir / CONFUSION_PLOT.name)
    path = out_dir / "report.md"
    advice = advise(files, verdicts)
    path.write_text(markdown(job, files, verdicts, plot, advice))
    return path, verdicts, advice
