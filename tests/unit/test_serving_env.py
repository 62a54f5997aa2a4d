"""ServingEnv: every serving variable read from one declaration, which also renders the README's table."""

from pathlib import Path

import pytest
from declared_tables import help_output, readme_tables

from dogbreed.errors import UserError
from dogbreed.serve import parse_args
from dogbreed.sm_env import ServingEnv


def test_readme_lists_the_serving_variables_exactly_as_declared():
    assert readme_tables("| variable | default | meaning |") == [ServingEnv.variables_table()]


def test_serve_help_lists_every_variable(capsys):
    assert ServingEnv.variables_table() in help_output(parse_args, capsys)


def test_each_variable_sets_its_field_and_blank_means_the_default():
    env = ServingEnv.from_environ(
        {"SAGEMAKER_BASE_DIR": "/srv/ml", "SAGEMAKER_BIND_TO_PORT": "9000", "DOGBREED_PRECISION": " BF16 ",
         "SAGEMAKER_BATCH_STRATEGY": "single_record", "DOGBREED_MAX_BATCH_DELAY_MS": "0", "DOGBREED_STREAMS": " "}
    )  # fmt: skip
    assert (env.model_dir.as_posix(), env.port, env.precision) == ("/srv/ml/model", 9000, "bf16")
    assert (env.batch_strategy, env.max_batch_delay_ms, env.streams) == ("SINGLE_RECORD", 0, None)
    assert ServingEnv.from_environ({}) == ServingEnv(model_dir=Path("/opt/ml/model"))


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [("DOGBREED_PRECISION", "fp64", "expected one of auto, fp32, bf16, int8"),
     ("SAGEMAKER_BATCH_STRATEGY", "ALL", "expected one of SINGLE_RECORD, MULTI_RECORD"),
     ("DOGBREED_MAX_BATCH_SIZE", "0", "must be at least 1"),
     ("SAGEMAKER_MODEL_SERVER_WORKERS", "many", "is not an integer"),
     ("SAGEMAKER_BIND_TO_PORT", "70000", "must be at most 65535"),
     ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "99999999999999", "must be at most 100"),
     ("DOGBREED_MAX_BATCH_SIZE", "100000", "must be at most 256")],
)  # fmt: skip
def test_a_bad_value_names_its_variable(variable, value, message):
    with pytest.raises(UserError, match=f"{variable}='{value}'.*{message}"):
        ServingEnv.from_environ({variable: value})


def test_the_largest_values_nginx_and_sagemaker_accept_are_allowed():
    env = ServingEnv.from_environ(
        {"SAGEMAKER_BIND_TO_PORT": "65535", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100", "DOGBREED_MAX_BATCH_SIZE": "256"}
    )
    assert (env.port, env.max_payload_mb, env.max_batch_size) == (65535, 100, 256)
