"""Tables rendered from one declaration (hyperparameters, serving variables): README holds each verbatim and the
entry point's --help prints it."""

import re
from collections.abc import Callable
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_tables(header: str) -> list[str]:
    """Every Markdown table in README whose first row is `header` ("| name | default | meaning |")."""
    return re.findall(rf"^{re.escape(header)}\n(?:\|.*\n)+", README.read_text(), flags=re.MULTILINE)


def help_output(parse_args: Callable[[list[str]], object], capsys: pytest.CaptureFixture) -> str:
    """What `--help` prints; it must exit 0."""
    with pytest.raises(SystemExit) as info:
        parse_args(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out
