"""A real training run from random init: accuracy, artifacts, reports, metric regexes, reload in a fresh process."""

import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from train_support import REPO, run_train, write_tree

from dogbreed import data, quantize, train
from dogbreed.contract.metrics import EPOCH_FIELDS, METRIC_DEFINITIONS
from dogbreed.model import INT8_DEPRECATION_NOTICES, load_artifact
from dogbreed.presets import ClassificationPresetEval

HYPERPARAMETERS = {
    "epochs": "6",
    "fine_tune": "all",
    "augment": "false",
    "lr": "0.001",
    "image_size": "32",
    "num_workers": "0",
    "batch_size": "8",
    "pretrained": "false",
    "threads": "2",
    "patience": "0",  # all 6 epochs
    "sagemaker_region": '"us-east-1"',
}

PREDICT = """
import json, sys
from pathlib import Path
import torch
from PIL import Image
from dogbreed.model import load_artifact
from dogbreed.presets import ClassificationPresetEval
artifact = load_artifact(Path(sys.argv[1]))
transform = ClassificationPresetEval(config=artifact.preprocess)
batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in sys.argv[2:]])
with torch.inference_mode():
    print(json.dumps([artifact.class_names[i] for i in artifact.model(batch).argmax(1).tolist()]))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = write_tree(tmp_path_factory.mktemp("e2e") / "opt_ml", HYPERPARAMETERS, layout="channels")
    result = run_train(base)
    assert result.returncode == 0, result.stdout + result.stderr
    return base, result.stdout + result.stderr


def metric_values(log: str) -> dict[str, list[float]]:
    """What SageMaker would extract from the log with our MetricDefinitions."""
    return {d["Name"]: [float(v) for v in re.findall(d["Regex"], log)] for d in METRIC_DEFINITIONS}


def test_random_init_reaches_80_percent_validation_accuracy(trained):
    _, log = trained
    values = metric_values(log)
    assert values["epoch"] == [1, 2, 3, 4, 5, 6]
    assert len(values["valid_acc"]) == 7 and len(values["train_loss"]) == 6  # 6 epochs + the delivered model's
    assert values["valid_acc"][-1] >= 0.8, log
    assert len(values["test_acc"]) == 1 and values["test_acc"][0] >= 0.8


def test_final_line_reports_the_epoch_with_the_lowest_validation_loss(trained):
    base, log = trained
    values = metric_values(log)
    losses = values["valid_loss"][:6]
    best = losses.index(min(losses))
    assert values["best_epoch"] == [best + 1]
    assert (values["valid_loss"][-1], values["valid_acc"][-1]) == (losses[best], values["valid_acc"][best])
    metrics = json.loads((base / "model" / "model_config.json").read_text())["metrics"]
    assert (metrics["best_epoch"], metrics["select_by"], metrics["epochs"]) == (best + 1, "valid_loss", 6)


def test_metric_regexes_match_each_real_epoch_line(trained):
    _, log = trained
    lines = [line for line in log.splitlines() if re.search(r"\bepoch=\d", line)]
    assert len(lines) == 6
    for line in lines:
        for definition in METRIC_DEFINITIONS:
            if definition["Name"] in (*EPOCH_FIELDS, "epoch"):
                assert re.search(definition["Regex"], line), (definition, line)
    final = [line for line in log.splitlines() if "test_acc=" in line]
    assert len(final) == 1
    found = {d["Name"] for d in METRIC_DEFINITIONS if re.search(d["Regex"], final[0])}
    assert found == {"best_epoch", "valid_loss", "valid_acc", "test_loss", "test_acc"}


def test_artifact_reports_and_checkpoints(trained):
    base, _ = trained
    config = json.loads((base / "model" / "model_config.json").read_text())
    assert config["class_names"][0] == "001.Affenpinscher" and len(config["class_names"]) == 4
    assert config["preprocess"]["image_size"] == 32 and config["metrics"]["valid_acc"] >= 0.8
    assert isinstance(torch.load(base / "model" / "model.pt", weights_only=True), dict)
    report = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert [row["epoch"] for row in report["epochs"]] == [1, 2, 3, 4, 5, 6] and "test_acc" in report["final"]
    assert (base / "output" / "data" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (base / "output" / "data" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    per_class = report["per_class"]
    assert list(per_class) == config["class_names"] and sum(c["count"] for c in per_class.values()) == 16
    tested = sum(c["accuracy"] * c["count"] for c in per_class.values()) / 16
    assert abs(tested - report["final"]["test_acc"]) < 1e-3  # the test split, evaluated on the delivered model
    assert report["recommendations"] and all(isinstance(line, str) for line in report["recommendations"])
    assert (base / "output" / "data" / "metrics.csv").read_text().startswith("epoch,train_loss")
    assert sorted(p.name for p in (base / "checkpoints").iterdir()) == [
        "best.pt",
        "checkpoint-0005.pt",
        "checkpoint-0006.pt",
    ]
    assert not (base / "output" / "failure").exists()


def test_a_rerun_in_a_used_tree_leaves_none_of_the_previous_jobs_outputs(trained, tmp_path):
    """docker-compose trains in the same local_test/test_dir each time: a job without int8 or a test split left the
    previous job's model_int8.pt (25 MB, in model.tar.gz) and confusion matrix beside its own model."""
    base = tmp_path / "opt_ml"
    shutil.copytree(trained[0], base, ignore=shutil.ignore_patterns("checkpoints", "test"))
    config = base / "input" / "config"
    (config / "hyperparameters.json").write_text(json.dumps({**HYPERPARAMETERS, "epochs": "1", "int8": "false"}))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {}, "validation": {}}))
    (base / "model" / "model_int8.pt").write_bytes(b"a previous job's int8 model")  # this small model's gate fails
    assert train.main({"SAGEMAKER_BASE_DIR": str(base)}) == 0
    assert sorted(p.name for p in (base / "model").iterdir()) == ["model.pt", "model_config.json"]
    assert not (base / "output" / "data" / "confusion.png").exists()
    assert {oct(p.stat().st_mode & 0o777) for p in (base / "model").iterdir()} == {"0o644"}  # servable by any user


def test_artifact_reloads_in_a_fresh_process_with_the_same_predictions(trained):
    base, _ = trained
    images = sorted((base / "input" / "data" / "test").rglob("*.jpg"))
    fresh = subprocess.run(
        [sys.executable, "-c", PREDICT, str(base / "model"), *map(str, images)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "container")},
    )
    artifact = load_artifact(base / "model")
    transform = ClassificationPresetEval(config=artifact.preprocess)
    from PIL import Image

    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in images])
    with torch.inference_mode():
        here = [artifact.class_names[i] for i in artifact.model(batch).argmax(1).tolist()]
    assert json.loads(fresh.stdout) == here
    truth = [p.parent.name for p in images]
    assert sum(a == b for a, b in zip(here, truth, strict=True)) / len(truth) >= 0.8


def test_train_writes_an_int8_variant_gated_on_the_validation_split(trained):
    base, log = trained
    gate = json.loads((base / "model" / "model_config.json").read_text())["int8"]
    assert gate["images"] == len(list((base / "input" / "data" / "validation").rglob("*.jpg")))
    # This 32 px model's near-ties may flip (1 of 16 did): what matters is that the verdict follows the bar.
    assert gate["passed"] == (gate["top1_agreement"] >= 0.99 and gate["accuracy_drop"] <= 0.01), gate
    line = re.search(
        r"int8 top1_agreement=([0-9.]+) accuracy_drop=(-?[0-9.]+) max_prob_diff=([0-9.]+) gate_passed=(\S+)", log
    )
    assert line and float(line[1]) == pytest.approx(gate["top1_agreement"], abs=1e-4)
    assert float(line[4]) == float(gate["passed"])
    artifact = load_artifact(base / "model")  # int8 tensors read with weights_only=True, only for a passing model
    assert (artifact.int8_state is not None) == gate["passed"] == (base / "model" / "model_int8.pt").is_file()


SERVE_INT8 = """
import sys
from pathlib import Path
from dogbreed.serving.predictor import Predictor, PredictorConfig
predictor = Predictor.load(Path(sys.argv[1]), PredictorConfig(precision="int8"))
print(predictor.precision)
predictor.close()
"""


def test_neither_training_nor_a_fresh_server_prints_torchs_notices_about_quantized_tensors(trained, tmp_path):
    base, log = trained
    assert "int8 top1_agreement" in log  # the job did quantize
    # Whatever this small model's gate said, serve an int8 variant of it: made here, loaded in a fresh process.
    model_dir = tmp_path / "model"
    shutil.copytree(base / "model", model_dir)
    artifact = load_artifact(model_dir)
    size = artifact.preprocess.image_size
    passed = quantize.judge({"images": 8, "top1_agreement": 1.0, "fp32_acc": 1.0, "int8_acc": 1.0, "max_prob_diff": 0})
    quantize.save_int8(model_dir, quantize.quantize(artifact.model, [torch.rand(8, 3, size, size)]), passed)
    serving = subprocess.run(
        [sys.executable, "-c", SERVE_INT8, str(model_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "container")},
    )
    assert serving.stdout.strip() == "int8"
    for output in (log, serving.stderr):
        assert not [notice for notice in INT8_DEPRECATION_NOTICES if re.search(notice, output)], output


def test_deliberately_broken_calibration_fails_the_gate(trained):
    base, _ = trained
    artifact = load_artifact(base / "model")
    splits = data.load_splits(
        data.find_splits({"validation": base / "input/data/validation", "train": base / "input/data/train"})
    )
    valid = data.make_loader(splits.valid.with_transform(ClassificationPresetEval(config=artifact.preprocess)),
                             batch_size=16, train=False, num_workers=0, seed=0, shard=None)  # fmt: skip
    # Calibrating on blank images collapses every activation range: int8 saturates and answers the same class.
    broken = quantize.quantize(artifact.model, [torch.zeros(8, 3, 32, 32)])
    gate = quantize.compare(artifact.model, broken, valid)
    assert not gate["passed"] and "top-1 agreement" in gate["reason"], gate
    assert gate["top1_agreement"] < 0.99


def test_int8_false_makes_no_int8_variant_and_the_server_says_why(sm_tree):
    base = sm_tree({"epochs": "1", "fine_tune": "head", "augment": "false", "int8": "false"}, per_class=4)
    result = run_train(base)
    assert result.returncode == 0, result.stderr
    assert "int8 top1_agreement" not in result.stdout + result.stderr
    assert not (base / "model" / "model_int8.pt").exists()
    refusal = quantize.int8_refusal(load_artifact(base / "model"))
    assert refusal == "training did not make one (int8=false)"
