"""orchestrate.py inputs: flags, config files, validation; failures name the flag, before any AWS call."""

import json
from pathlib import Path

import pytest
from orchestrate_support import DATA_S3, IMAGE, OUTPUT_S3, REQUIRED, ROLE

from orchestration.config import LOCAL_IMAGE, parse_settings
from orchestration.errors import UsageError


def usage_error(*argv: str) -> str:
    with pytest.raises(UsageError) as caught:
        parse_settings(list(argv))
    return str(caught.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train"],
            "train: missing required input --image-uri, --role-arn, --data-s3, --output-s3, --region "
            "(give it as a flag or in --config)",
        ),
        (["deploy", "--region", "us-east-1", "--image-uri", IMAGE], "deploy: missing required input --role-arn"),
        (["train", *REQUIRED, "--region", "Europe"], "--region: 'Europe' is not an AWS region like us-east-1"),
        (
            ["train", *REQUIRED, "--region", "us-east-1", "--role-arn", "admin"],
            "--role-arn: 'admin' is not an IAM role",
        ),
        (
            ["train", *REQUIRED, "--region", "us-east-1", "--data-s3", "s3://b/x"],
            "--data-s3: 's3://b/x' is not an s3://",
        ),
        (
            ["train", *REQUIRED, "--region", "us-east-1", "--output-s3", "/tmp/out"],
            "--output-s3: '/tmp/out' is not an s3",
        ),
        (["hpo", *REQUIRED, "--region", "us-east-1", "--max-jobs", "many"], "--max-jobs: 'many' is not a number"),
        (
            ["hpo", *REQUIRED, "--region", "us-east-1", "--max-parallel-jobs", "0"],
            "--max-parallel-jobs: '0' must be at",
        ),
        (["hpo", *REQUIRED, "--region", "us-east-1", "--objective", "loss"], "--objective: 'loss' is not one of"),
        (["train", *REQUIRED, "--region", "us-east-1", "--hp", "lr"], "--hyperparameters: 'lr' is not KEY=VALUE"),
        (["train", *REQUIRED, "--region", "us-east-1", "--train-instance-type", "p3"], "--train-instance-type: 'p3'"),
        (["predict", "--region", "us-east-1", "--count", "-1"], "--count: '-1' must be at least 1"),
        (["hpo", "--local", "--data-s3", "/tmp"], "--local: 'hpo' needs SageMaker"),
        (["train", "--local", "--data-s3", "/tmp", "--dry-run"], "--dry-run prints SageMaker requests"),
    ],
)
def test_bad_inputs_name_the_flag(argv: list[str], message: str):
    assert usage_error(*argv).startswith(message)


def test_config_file_supplies_inputs_and_flags_win(tmp_path: Path):
    config = tmp_path / "run.json"
    config.write_text(
        json.dumps(
            {
                "image-uri": IMAGE,
                "role_arn": ROLE,
                "data_s3": DATA_S3,
                "output_s3": OUTPUT_S3,
                "region": "eu-west-1",
                "hyperparameters": {"lr": 0.01, "augment": False},
            }
        )
    )
    settings = parse_settings(["train", "--config", str(config), "--region", "us-east-1"])
    assert (settings.image_uri, settings.role_arn, settings.region) == (IMAGE, ROLE, "us-east-1")
    assert settings.hyperparameters == {"lr": "0.01", "augment": "false"}


def test_toml_config_file(tmp_path: Path):
    config = tmp_path / "run.toml"
    config.write_text(
        f'image_uri = "{IMAGE}"\nrole_arn = "{ROLE}"\ndata_s3 = "{DATA_S3}"\noutput_s3 = "{OUTPUT_S3}"\n'
        'region = "us-west-2"\nmax_jobs = 8\nspot = true\n'
    )
    settings = parse_settings(["hpo", "--config", str(config)])
    assert (settings.region, settings.max_jobs, settings.spot) == ("us-west-2", 8, True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"image_uri": "x", "colour": "red"}', "unknown setting(s) colour"),
        ("[1, 2]", "must hold a table of settings"),
        ('{"max_jobs": "lots"}', "--max-jobs: 'lots' is not a number"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str, message: str):
    config = tmp_path / "run.json"
    config.write_text(content)
    assert message in usage_error("hpo", "--config", str(config))


def test_missing_config_file():
    assert (
        usage_error("hpo", "--config", "/nonexistent/run.toml")
        == "--config: cannot read /nonexistent/run.toml: No such file or directory"
    )


def test_local_mode_fills_image_role_region_and_output(tmp_path: Path):
    settings = parse_settings(["all", "--local", "--data-s3", str(tmp_path), "--workdir", str(tmp_path / "w")])
    assert (settings.image_uri, settings.train_instance_type, settings.endpoint_instance_type) == (
        LOCAL_IMAGE,
        "local",
        "local",
    )
    assert settings.data_s3 == f"file://{tmp_path}"
    assert settings.output_s3 == f"file://{tmp_path / 'w' / 'local-output'}"
    assert settings.managed_rules is False


def test_local_transform_of_a_folder_of_subfolders_says_local_mode_reads_only_its_files(tmp_path):
    from orchestration.transform import check_local_input

    (tmp_path / "001.Affenpinscher").mkdir()
    (tmp_path / "001.Affenpinscher" / "a.jpg").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"labels only the files directly in the folder.*001\.Affenpinscher"):
        check_local_input(tmp_path)
    (tmp_path / "b.jpg").write_bytes(b"x")
    check_local_input(tmp_path)
