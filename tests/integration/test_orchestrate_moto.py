"""orchestrate.py end to end against a real moto_server over HTTP: assertions on the requests moto received."""

import json
import re
from pathlib import Path

import boto3
import pytest
from moto_server import MotoServer, aws_environment
from orchestrate_support import (
    DATA_S3,
    IMAGE,
    OUTPUT_BUCKET,
    OUTPUT_S3,
    REQUIRED,
    ROLE,
    run_cli,
    run_script,
    upload_sample_data,
)

from dogbreed.contract.metrics import METRIC_DEFINITIONS, epoch_line

pytest_plugins = ["moto_server"]  # the moto_process / aws fixtures

RULES = {"VanishingGradient", "Overfit", "Overtraining", "PoorWeightInitialization", "LossNotDecreasing"}


def test_hpo_sends_the_ranges_objective_and_container_metric_regexes(aws: MotoServer, capsys, tmp_path: Path):
    upload_sample_data(tmp_path)
    result = run_cli(capsys, "hpo", *REQUIRED, "--max-jobs", "6", "--max-parallel-jobs", "3", "--hp", "fine_tune=all")
    assert result.code == 0, result.err

    (request,) = aws.calls("CreateHyperParameterTuningJob")
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": "valid_loss"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 3}
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "lr", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
    ]
    assert {r["Name"]: r["Values"] for r in ranges["CategoricalParameterRanges"]} == {
        "batch_size": ["64", "128", "256"],
        "epochs": ["5", "10"],
    }
    definition = request["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert definition["StaticHyperParameters"]["fine_tune"] == "all"
    assert [c["ChannelName"] for c in definition["InputDataConfig"]] == ["train", "valid", "test"]

    best = json.loads((tmp_path / "orchestrate-runs" / "best_hyperparameters.json").read_text())
    assert best["tuning_job"] == request["HyperParameterTuningJobName"]
    assert "best hyperparameters" in result.out


def test_hpo_tunes_on_cached_features_by_default_and_train_keeps_the_recipe(aws: MotoServer, capsys, tmp_path: Path):
    upload_sample_data(tmp_path)
    result = run_cli(capsys, "hpo", *REQUIRED)
    assert result.code == 0, result.err
    (request,) = aws.calls("CreateHyperParameterTuningJob")
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    recipe = {"augment": "false", "fine_tune": "head", "cache_features": "true"}
    assert {key: static.get(key) for key in recipe} == recipe
    assert "each trial runs the backbone once and trains the head on cached features" in result.out
    assert "; trials only: int8=false (their models are discarded); `train` then uses the same recipe" in result.out

    assert static["int8"] == "false"  # a trial's model is discarded: no int8 variant is made for it

    assert run_cli(capsys, "train", *REQUIRED, "--no-managed-rules").code == 0
    (training,) = aws.calls("CreateTrainingJob")
    assert {key: training["HyperParameters"].get(key) for key in recipe} == recipe
    assert "int8" not in training["HyperParameters"]  # the delivered model gets its int8 variant


def test_hpo_with_augmentation_when_asked(aws: MotoServer, capsys, tmp_path: Path):
    upload_sample_data(tmp_path)
    result = run_cli(capsys, "hpo", *REQUIRED, "--tune-with-augmentation")
    assert result.code == 0, result.err
    (request,) = aws.calls("CreateHyperParameterTuningJob")
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert not {"augment", "fine_tune", "cache_features"} & set(static)  # the image's defaults: augment=true
    assert "each trial runs the backbone every epoch" in result.out


def test_the_metric_regexes_parse_the_training_log_line():
    line = epoch_line(3, {"train_loss": 0.412, "train_acc": 0.5, "valid_loss": 0.5013, "valid_acc": 0.871})
    found = {d["Name"]: re.search(d["Regex"], line).group(1) for d in METRIC_DEFINITIONS if re.search(d["Regex"], line)}
    assert found == {
        "epoch": "3",
        "train_loss": "0.4120",
        "train_acc": "0.5000",
        "valid_loss": "0.5013",
        "valid_acc": "0.8710",
    }


def test_accuracy_objective_is_maximised(aws: MotoServer, capsys, tmp_path: Path):
    upload_sample_data(tmp_path)
    assert run_cli(capsys, "hpo", *REQUIRED, "--objective", "valid_acc").code == 0
    (request,) = aws.calls("CreateHyperParameterTuningJob")
    objective = request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert objective == {"Type": "Maximize", "MetricName": "valid_acc"}


def test_train_gives_the_job_a_channel_per_split_folder_present(aws: MotoServer, capsys, tmp_path):
    """No channel for a test/ that is not there (SageMaker fails a job on an empty channel); no data at all is an
    error before any job starts."""
    boto3.client("s3").create_bucket(Bucket="empty")
    empty = run_cli(capsys, "train", *REQUIRED, "--data-s3", "s3://empty/dogImages", "--no-managed-rules")
    assert empty.code == 1 and "--data-s3: nothing under s3://empty/dogImages/: give the prefix" in empty.err
    assert not aws.calls("CreateTrainingJob")

    upload_sample_data(tmp_path, splits=("train", "valid"))
    assert run_cli(capsys, "train", *REQUIRED, "--no-managed-rules").code == 0
    (request,) = aws.calls("CreateTrainingJob")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels == {"train": f"{DATA_S3}/train", "valid": f"{DATA_S3}/valid"}


def test_train_gives_breed_folders_or_an_archive_as_one_training_channel(aws: MotoServer, capsys, tmp_path):
    upload_sample_data(tmp_path, splits=("train",))  # dogImages/<breed>/*.jpg: the job holds out a validation share
    boto3.client("s3").put_object(Bucket="dogbreed-data", Key="zipped/dogImages.zip", Body=b"PK\x05\x06" + bytes(18))
    assert run_cli(capsys, "train", *REQUIRED, "--no-managed-rules").code == 0
    zipped = "s3://dogbreed-data/zipped"
    assert run_cli(capsys, "train", *REQUIRED, "--data-s3", zipped, "--no-managed-rules").code == 0
    inputs = [
        {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
        for request in aws.calls("CreateTrainingJob")
    ]
    assert inputs == [{"training": DATA_S3}, {"training": zipped}]


def test_train_reads_best_hyperparameters_and_configures_debugger_rules_and_profiler(aws: MotoServer, capsys, tmp_path):
    upload_sample_data(tmp_path)
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"hyperparameters": {"lr": "0.0123", "batch_size": "128", "epochs": "10"}}))
    result = run_cli(capsys, "train", *REQUIRED, "--hyperparameters-file", str(best), "--hp", "epochs=5")
    assert result.code == 0, result.err

    (request,) = aws.calls("CreateTrainingJob")
    job = request["TrainingJobName"]
    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert request["RoleArn"] == ROLE
    assert request["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert request["HyperParameters"] == {"lr": "0.0123", "batch_size": "128", "epochs": "5"}
    assert request["CheckpointConfig"]["S3Uri"] == f"{OUTPUT_S3}/checkpoints/{job}"
    hook = request["DebugHookConfig"]
    assert hook["S3OutputPath"] == OUTPUT_S3
    collections = {c["CollectionName"]: c.get("CollectionParameters", {}) for c in hook["CollectionConfigurations"]}
    assert set(collections) == {"losses", "gradients", "relu_input"}
    for parameters in collections.values():
        assert {"train.save_interval", "eval.save_interval"} <= set(parameters)
    assert {r["RuleConfigurationName"] for r in request["DebugRuleConfigurations"]} == RULES
    assert [r["RuleConfigurationName"] for r in request["ProfilerRuleConfigurations"]] == ["ProfilerReport"]
    assert request["ProfilerConfig"] == {
        "S3OutputPath": OUTPUT_S3,
        "ProfilingIntervalInMilliseconds": 500,
        "DisableProfiler": False,
    }
    assert "EnableManagedSpotTraining" not in request
    assert json.loads((tmp_path / "orchestrate-runs" / "state.json").read_text())["training_job"] == job


def test_spot_training_and_no_managed_rules(aws: MotoServer, capsys, tmp_path):
    upload_sample_data(tmp_path)
    result = run_cli(capsys, "train", *REQUIRED, "--spot", "--max-run-seconds", "3600", "--no-managed-rules")
    assert result.code == 0, result.err
    (request,) = aws.calls("CreateTrainingJob")
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert "DebugRuleConfigurations" not in request
    assert "ProfilerRuleConfigurations" not in request
    assert request["DebugHookConfig"]["CollectionConfigurations"]  # tensors are still saved for `report`


def test_deploy_predict_cleanup(aws: MotoServer, capsys, tmp_path):
    upload_sample_data(tmp_path)
    assert run_cli(capsys, "train", *REQUIRED, "--no-managed-rules").code == 0
    (train,) = aws.calls("CreateTrainingJob")

    deployed = run_cli(capsys, "deploy", "--image-uri", IMAGE, "--role-arn", ROLE)
    assert deployed.code == 0, deployed.err
    (model,) = aws.calls("CreateModel")
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"{OUTPUT_S3}/{train['TrainingJobName']}/output/model.tar.gz"
    assert model["ExecutionRoleArn"] == ROLE
    (config,) = aws.calls("CreateEndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert (variant["ModelName"], variant["InstanceType"]) == (model["ModelName"], "ml.m5.large")
    (endpoint,) = aws.calls("CreateEndpoint")
    assert endpoint["EndpointConfigName"] == config["EndpointConfigName"]
    assert "InService" in deployed.out

    answer = {"predictions": [{"label": "002.Afghan_hound", "breed": "Afghan_hound", "probability": 0.9}]}
    aws.admin("static/sagemaker/endpoint-results", {"results": [{"Body": json.dumps(answer)}] * 3})
    predicted = run_cli(capsys, "predict", "--data-s3", "s3://dogbreed-data/dogImages", "--count", "3")
    assert predicted.code == 0, predicted.err
    rows = [line.split() for line in predicted.out.splitlines() if line.endswith("0.900")]
    assert [(row[1], row[2]) for row in rows] == [
        ("001.Affenpinscher", "002.Afghan_hound"),
        ("002.Afghan_hound", "002.Afghan_hound"),
        ("003.Airedale_terrier", "002.Afghan_hound"),
    ]
    assert "1/3 correct" in predicted.out

    cleaned = run_cli(capsys, "cleanup")
    assert cleaned.code == 0, cleaned.err
    name = endpoint["EndpointName"]
    assert f"deleted: endpoint {name}, endpoint config {name}, model {name}" in cleaned.out
    sagemaker = boto3.client("sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert sagemaker.list_models()["Models"] == []


def test_all_chains_tuning_training_endpoint_and_cleanup(aws: MotoServer, tmp_path):
    upload_sample_data(tmp_path)
    answer = {"predictions": [{"label": "001.Affenpinscher", "probability": 0.5}]}
    aws.admin("static/sagemaker/endpoint-results", {"results": [{"Body": json.dumps(answer)}] * 2})
    result = run_script(
        "all",
        *REQUIRED,
        "--region",
        "us-east-1",
        "--poll-seconds",
        "0.05",
        "--count",
        "2",
        env=aws_environment(aws.url),
        cwd=tmp_path,
    )
    assert result.code == 0, result.err
    operations = aws.operations()
    order = [
        "CreateHyperParameterTuningJob",
        "CreateTrainingJob",
        "CreateModel",
        "CreateEndpoint",
        "DeleteEndpoint",
        "DeleteEndpointConfig",
        "DeleteModel",
    ]
    assert [op for op in operations if op in order] == order, (result.out, result.err)
    (train,) = aws.calls("CreateTrainingJob")
    (model,) = aws.calls("CreateModel")
    assert model["PrimaryContainer"]["ModelDataUrl"].endswith(f"{train['TrainingJobName']}/output/model.tar.gz")
    assert "1/2 correct" in result.out  # moto answers Affenpinscher for both images
    assert (tmp_path / "orchestrate-runs" / train["TrainingJobName"] / "report" / "report.md").is_file()


def test_dry_run_prints_the_requests_and_sends_none(aws: MotoServer, capsys):
    result = run_cli(capsys, "train", *REQUIRED, "--dry-run")
    assert result.code == 0, result.err
    printed = result.out[result.out.index("CreateTrainingJob ") + len("CreateTrainingJob ") :]
    request = json.loads(printed[: printed.index("\n}\n") + 2])
    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert {r["RuleConfigurationName"] for r in request["DebugRuleConfigurations"]} == RULES
    assert aws.recorded() == []


@pytest.mark.parametrize("command", ["deploy", "report"])
def test_commands_default_to_the_last_training_job(aws: MotoServer, capsys, command):
    result = run_cli(capsys, command, "--image-uri", IMAGE, "--role-arn", ROLE)
    assert result.code == 2
    assert result.error_lines == [
        "orchestrate.py: error: --training-job: not given, and orchestrate-runs/state.json records none"
    ]


def test_transform_runs_single_record_jobs_and_prints_one_label_per_image(aws: MotoServer, capsys, tmp_path):
    upload_sample_data(tmp_path)
    assert run_cli(capsys, "train", *REQUIRED, "--no-managed-rules").code == 0
    (train,) = aws.calls("CreateTrainingJob")
    output = f"{OUTPUT_S3}/answers"
    answer = {"predictions": [{"label": "002.Afghan_hound", "breed": "Afghan hound", "probability": 0.9}]}
    unreadable = {"error": "cannot identify a JPEG, ... image in the request body", "status": 400}  # SAGEMAKER_BATCH
    outputs = {
        "001.Affenpinscher/a.jpg": answer,
        "002.Afghan_hound/b.jpg": answer,
        "002.Afghan_hound/c.jpg": unreadable,
    }
    for image, body in outputs.items():  # what SageMaker writes per input file
        boto3.client("s3").put_object(Bucket=OUTPUT_BUCKET, Key=f"runs/answers/{image}.out", Body=json.dumps(body))

    result = run_cli(
        capsys, "transform", *REQUIRED, "--transform-input", f"{DATA_S3}/test", "--transform-output", output
    )
    assert result.code == 0, result.err
    (model,) = aws.calls("CreateModel")
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"{OUTPUT_S3}/{train['TrainingJobName']}/output/model.tar.gz"
    (job,) = aws.calls("CreateTransformJob")
    assert job["ModelName"] == model["ModelName"]
    assert job["BatchStrategy"] == "SingleRecord"
    assert job["TransformInput"]["ContentType"] == "application/x-image"
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"{DATA_S3}/test"
    assert job["TransformOutput"] == {"S3OutputPath": output, "Accept": "application/json;verbose=true"}
    assert job["TransformResources"]["InstanceType"] == "ml.m5.large"
    assert aws.calls("DeleteModel")  # the model made for the job goes with it
    rows = [line.split(maxsplit=1) for line in result.out.splitlines() if line.endswith("0.900")]
    assert [row[0] for row in rows] == ["001.Affenpinscher/a.jpg", "002.Afghan_hound/b.jpg"]
    unread = [line.split(maxsplit=1) for line in result.out.splitlines() if line.startswith("002.Afghan_hound/c.jpg")]
    assert (
        unread == [["002.Afghan_hound/c.jpg", unreadable["error"]]]
        and "2 images labelled, 1 not readable" in result.out
    )
    table = tmp_path / "orchestrate-runs" / job["TransformJobName"] / "predictions.csv"
    lines = table.read_text().splitlines()
    assert lines[0] == "image,label,breed,probability,error"
    assert lines[1] == "001.Affenpinscher/a.jpg,002.Afghan_hound,Afghan hound,0.9,"
    assert lines[3] == '002.Afghan_hound/c.jpg,,,,"' + unreadable["error"] + '"'  # CSV-quoted: it holds a comma
