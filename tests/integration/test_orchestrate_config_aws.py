"""orchestrate.py's usage errors through main() against a real moto_server: one line, and no AWS request sent."""

import pytest
from moto_server import MotoServer
from orchestrate_support import IMAGE, run_cli

pytest_plugins = ["moto_server"]  # the moto_process / aws fixtures


@pytest.mark.parametrize("command", ["hpo", "train", "deploy", "all"])
def test_usage_errors_are_one_line_and_no_request_is_sent(aws: MotoServer, capsys, command: str):
    result = run_cli(capsys, command, "--image-uri", IMAGE, "--data-s3", "s3://no")
    assert result.code == 2
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith("orchestrate.py: error: --data-s3: 's3://no' is not an s3://")
    assert aws.recorded() == []


def test_missing_input_is_one_line(aws: MotoServer, capsys):
    result = run_cli(capsys, "hpo", "--image-uri", IMAGE)
    assert (result.code, result.err) == (
        2,
        "orchestrate.py: error: hpo: missing required input --role-arn, --data-s3, --output-s3 "
        "(give it as a flag or in --config)\n",
    )
    assert aws.recorded() == []
