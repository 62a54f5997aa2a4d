"""sm_env: every path from SAGEMAKER_BASE_DIR; the training and serving environments as SageMaker hands them over."""

import json
import re
from pathlib import Path

import pytest

from dogbreed.errors import UserError
from dogbreed.sm_env import Paths, ServingEnv, TrainingEnv, paths_from_environ


def write_config(base: Path, name: str, content) -> Path:
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    path = config / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_paths_derive_from_sagemaker_base_dir(tmp_path):
    paths = paths_from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert paths == Paths(tmp_path)
    assert paths.hyperparameters_file == tmp_path / "input" / "config" / "hyperparameters.json"
    assert paths.inputdataconfig_file == tmp_path / "input" / "config" / "inputdataconfig.json"
    assert paths.resourceconfig_file == tmp_path / "input" / "config" / "resourceconfig.json"
    assert paths.checkpointconfig_file == tmp_path / "input" / "config" / "checkpointconfig.json"
    assert paths.data_dir == tmp_path / "input" / "data"
    assert paths.model_dir == tmp_path / "model"
    assert paths.output_data_dir == tmp_path / "output" / "data"
    assert paths.failure_file == tmp_path / "output" / "failure"


def test_base_dir_defaults_to_opt_ml_and_nothing_is_created(tmp_path):
    assert paths_from_environ({}).base == Path("/opt/ml")
    TrainingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    ServingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert list(tmp_path.iterdir()) == []


def test_training_env_reads_the_tree_sagemaker_writes(tmp_path):
    write_config(tmp_path, "hyperparameters.json", {"epochs": "5", "lr": 0.1, "batch_size": 32})
    write_config(tmp_path, "inputdataconfig.json", {"train": {"TrainingInputMode": "File"}, "validation": {}})
    write_config(tmp_path, "resourceconfig.json", {"current_host": "algo-2", "hosts": ["algo-3", "algo-1", "algo-2"]})
    write_config(tmp_path, "checkpointconfig.json", {"LocalPath": str(tmp_path / "spot")})
    for channel in ("train", "test"):  # test: present on disk although not declared
        (tmp_path / "input" / "data" / channel).mkdir(parents=True)

    env = TrainingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})

    assert env.paths == Paths(tmp_path)
    assert env.hyperparameters == {"epochs": "5", "lr": "0.1", "batch_size": "32"}
    data = tmp_path / "input" / "data"
    assert env.channels == {"test": data / "test", "train": data / "train", "validation": data / "validation"}
    assert env.hosts == ["algo-1", "algo-2", "algo-3"]
    assert env.current_host == "algo-2"
    assert env.checkpoint_dir == tmp_path / "spot"


def test_a_bare_tree_is_one_host_without_hyperparameters_or_channels(tmp_path):
    env = TrainingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert env.hyperparameters == {}
    assert env.channels == {}
    assert env.hosts == ["algo-1"]
    assert env.current_host == "algo-1"


@pytest.mark.parametrize(
    "name", ["hyperparameters.json", "inputdataconfig.json", "resourceconfig.json", "checkpointconfig.json"]
)
def test_malformed_config_json_names_the_file(tmp_path, name):
    path = write_config(tmp_path, name, '{"epochs": "5",')
    with pytest.raises(UserError, match="not valid JSON") as raised:
        TrainingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert str(path) in str(raised.value)


def test_a_pipe_mode_channel_is_refused_naming_the_modes_that_work(tmp_path):
    write_config(tmp_path, "inputdataconfig.json", {"train": {"TrainingInputMode": "Pipe"}, "valid": {}})
    with pytest.raises(UserError, match=r"channel\(s\) train use Pipe input mode.*File \(the default\) or FastFile"):
        TrainingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})


def test_config_json_that_is_not_an_object_names_the_file(tmp_path):
    path = write_config(tmp_path, "hyperparameters.json", ["epochs", "5"])
    with pytest.raises(UserError, match="must hold a JSON object") as raised:
        TrainingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert str(path) in str(raised.value)


def test_serving_env_defaults_follow_the_hosting_contract(tmp_path):
    env = ServingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert env.model_dir == tmp_path / "model"
    assert env.port == 8080
    assert env.workers is None  # chosen by the launcher from cores and memory
    assert env.timeout == 60
    assert env.max_payload_mb == 6
    assert env.batch_strategy == "MULTI_RECORD"
    assert env.max_concurrent_transforms == 1


def test_serving_env_overrides(tmp_path):
    env = ServingEnv.from_environ(
        {
            "SAGEMAKER_BASE_DIR": str(tmp_path),
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": " 120 ",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100",
            "SAGEMAKER_BATCH_STRATEGY": "single_record",
            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
            "DOGBREED_PRECISION": "BF16",
        }
    )
    assert (env.port, env.workers, env.timeout, env.max_payload_mb) == (9090, 3, 120, 100)
    assert (env.batch_strategy, env.max_concurrent_transforms) == ("SINGLE_RECORD", 4)
    assert env.precision == "bf16"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("SAGEMAKER_BIND_TO_PORT=eighty", "SAGEMAKER_BIND_TO_PORT='eighty' is not an integer"),
        ("SAGEMAKER_MODEL_SERVER_TIMEOUT=1.5", "SAGEMAKER_MODEL_SERVER_TIMEOUT='1.5' is not an integer"),
        ("SAGEMAKER_MODEL_SERVER_WORKERS=0", "SAGEMAKER_MODEL_SERVER_WORKERS='0' must be at least 1"),
        ("SAGEMAKER_BATCH_STRATEGY=EVERYTHING", "expected one of SINGLE_RECORD, MULTI_RECORD"),
        ("DOGBREED_PRECISION=fp8", "DOGBREED_PRECISION='fp8'"),
    ],
)
def test_serving_env_refuses_bad_values_naming_the_variable(tmp_path, setting, message):
    key, value = setting.split("=")
    with pytest.raises(UserError, match=re.escape(message)):
        ServingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path), key: value})


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"hosts": "algo-1"}, r'"hosts" must be a list of host names like \["algo-1"\], not "algo-1"'),
        ({"hosts": ["algo-1", 2]}, r'"hosts" must be a list of host names like \["algo-1"\], not \["algo-1", 2\]'),
        ({"hosts": ["algo-1"], "current_host": "algo-9"}, r'"current_host" "algo-9" is not one of "hosts"'),
    ],
)
def test_a_resourceconfig_of_another_shape_names_the_file_and_the_field(tmp_path, resources, message):
    """ "hosts": "algo-1" was sorted into its characters, then the rank lookup raised ValueError (exit 2)."""
    write_config(tmp_path, "resourceconfig.json", resources)
    with pytest.raises(UserError, match=r"resourceconfig\.json: " + message):
        TrainingEnv.from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
