"""`report` on tensors saved by real training runs (the dogbreed train entry point with our hook config)."""

import json
import math
import tarfile
from pathlib import Path

import boto3
import pytest
from moto_server import MotoServer
from orchestrate_support import OUTPUT_BUCKET, REQUIRED, run_cli, upload_sample_data
from train_support import FAST, run_train, write_tree

from orchestration import jobs, rules
from orchestration.config import Settings
from orchestration.rules import FIRED, NO_DATA, OK, Series

pytest_plugins = ["moto_server"]  # the moto_process / aws fixtures

LEARNING_LR, DIVERGING_LR, FROZEN_LR = "0.001", "10", "1e-8"


@pytest.fixture(scope="module")
def tensors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """smdebug tensors of three real 4-epoch runs: one that learns, one that diverges, one that cannot move."""
    found = {}
    for lr in (LEARNING_LR, DIVERGING_LR, FROZEN_LR):
        base = write_tree(tmp_path_factory.mktemp(f"lr{lr}"), {**FAST, "epochs": "4", "lr": lr}, layout="channels")
        hook = jobs.hook_config(
            Settings(command="train", output_s3="s3://unused-bucket"), str(base / "output" / "tensors")
        )
        (base / "input" / "config" / "debughookconfig.json").write_text(json.dumps(hook))
        result = run_train(base)
        assert result.returncode == 0, result.stderr[-2000:]
        found[lr] = base / "output" / "tensors"
    return found


def upload_tensors(local: Path, job: str) -> None:
    s3 = boto3.client("s3")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        s3.upload_file(str(path), OUTPUT_BUCKET, f"runs/{job}/debug-output/{path.relative_to(local)}")


def upload_output(data_dir: Path, job: str, tmp_path: Path) -> None:
    """The job's output/data as SageMaker uploads it: JOB/output/output.tar.gz with the files at its top."""
    archive = tmp_path / "output.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(data_dir.iterdir()):
            tar.add(path, arcname=path.name)
    boto3.client("s3").upload_file(str(archive), OUTPUT_BUCKET, f"runs/{job}/output/output.tar.gz")


def train_and_report(
    aws: MotoServer, capsys, tmp_path: Path, tensors_dir: Path, *, debugger: bool = True
) -> tuple[str, str]:
    """`train` (moto records the job), the run's tensors (unless the job ran without Debugger) and output uploaded
    where SageMaker puts them, `report`."""
    upload_sample_data(tmp_path)
    assert run_cli(capsys, "train", *REQUIRED).code == 0
    (request,) = aws.calls("CreateTrainingJob")
    job = request["TrainingJobName"]
    if debugger:
        upload_tensors(tensors_dir, job)
    upload_output(tensors_dir.parent / "data", job, tmp_path)
    report = f"runs/{job}/rule-output/ProfilerReport-1/profiler-output/profiler-reports/LowGPUUtilization.json"
    summary = {"RuleTriggered": 0, "Violations": 0, "Details": {}, "Datapoints": 42}
    boto3.client("s3").put_object(Bucket=OUTPUT_BUCKET, Key=report, Body=json.dumps(summary).encode())
    result = run_cli(capsys, "report")
    assert result.code == 0, result.err
    return job, result.out


def verdicts(out: str) -> dict[str, str]:
    names = {"vanishing_gradient", "overfit", "overtraining", "poor_weight_initialization", "loss_not_decreasing"}
    return {
        line.split()[0]: line.split()[1] for line in out.splitlines() if line.split()[:1] and line.split()[0] in names
    }


def test_report_of_a_learning_run(aws: MotoServer, capsys, tmp_path: Path, tensors: dict[str, Path]):
    job, out = train_and_report(aws, capsys, tmp_path, tensors[LEARNING_LR])
    found = verdicts(out)
    assert set(found) == {
        "vanishing_gradient",
        "overfit",
        "overtraining",
        "poor_weight_initialization",
        "loss_not_decreasing",
    }
    assert found["loss_not_decreasing"] == OK
    assert found["vanishing_gradient"] == OK
    report_dir = tmp_path / "orchestrate-runs" / job / "report"
    png = (report_dir / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    markdown = (report_dir / "report.md").read_text()
    assert "![loss](loss.png)" in markdown
    assert "| loss_not_decreasing | ok |" in markdown
    assert "| LowGPUUtilization | 0 | 0 | 42 |" in markdown
    trained = json.loads((tensors[LEARNING_LR].parent / "data" / "metrics.json").read_text())
    final = trained["final"]
    assert f"Epoch {final['best_epoch']} of {final['epochs']} (by valid_loss)" in markdown
    for name, entry in trained["per_class"].items():
        assert f"| {name} | {entry['accuracy']} | {entry['count']} |" in markdown
    assert "![confusion matrix](confusion.png)" in markdown
    assert (report_dir / "confusion.png").read_bytes().startswith(b"\x89PNG")
    advice = markdown.split("## Recommendations\n\n")[1].split("\n\n")[0].splitlines()
    assert advice and all(line.startswith("- ") for line in advice)
    assert [f"recommendation: {line[2:]}" for line in advice] == [
        line for line in out.splitlines() if line.startswith("recommendation: ")
    ]


def test_a_run_without_debugger_tensors_still_reports_its_metrics(aws: MotoServer, capsys, tmp_path, tensors):
    job, out = train_and_report(aws, capsys, tmp_path, tensors[LEARNING_LR], debugger=False)
    markdown = (tmp_path / "orchestrate-runs" / job / "report" / "report.md").read_text()
    for rule in verdicts(out):
        assert f"| {rule} | {NO_DATA} |" in markdown
    assert len(verdicts(out)) == 5
    per_class = json.loads((tensors[LEARNING_LR].parent / "data" / "metrics.json").read_text())["per_class"]
    for name, entry in per_class.items():
        assert f"| {name} | {entry['accuracy']} | {entry['count']} |" in markdown


@pytest.mark.parametrize("lr", [DIVERGING_LR, FROZEN_LR])
def test_a_run_that_cannot_learn_fires_loss_not_decreasing(aws: MotoServer, capsys, tmp_path, tensors, lr: str):
    _, out = train_and_report(aws, capsys, tmp_path, tensors[lr])
    assert verdicts(out)["loss_not_decreasing"] == FIRED


def test_rules_without_tensors_say_so():
    assert {v.status for v in rules.evaluate(rules.RunTensors())} == {NO_DATA}


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ([2.0, 1.8, 1.5, 1.2, 1.0, 0.8], OK),
        ([2.0, 2.1, 1.9, 2.0, 2.05, 1.95], FIRED),  # flat
        ([1.0, 50.0, 30.0, 20.0, 10.0, 5.0], FIRED),  # diverged, then fell, still above the start
        ([2.0, 1.5, math.nan, 1.0], FIRED),
    ],
)
def test_loss_not_decreasing(values: list[float], status: str):
    assert rules.loss_not_decreasing(Series(list(range(len(values))), values)).status == status


def test_overfit_compares_aligned_windows():
    train = Series(list(range(10)), [1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.08, 0.05])
    assert (
        rules.overfit(train, Series(list(range(10)), [1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.08, 0.05])).status
        == OK
    )
    assert rules.overfit(train, Series(list(range(5)), [1.0, 0.9, 0.9, 1.0, 1.1])).status == FIRED


def test_vanishing_gradient_and_poor_initialisation_thresholds():
    assert rules.vanishing_gradient({"g": Series([0, 10], [1e-3, 1e-9])}).status == FIRED
    assert rules.vanishing_gradient({"g": Series([0, 10], [1e-3, 1e-4])}).status == OK
    assert rules.poor_weight_initialization({"a": Series([0], [1.0]), "b": Series([0], [5.0])}).status == OK
    assert rules.poor_weight_initialization({"a": Series([0], [0.1]), "b": Series([0], [5.0])}).status == FIRED
