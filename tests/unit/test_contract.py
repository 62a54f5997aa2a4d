"""The contract package stays importable without torch: orchestrate.py and bench/ import it on a laptop."""

import ast
import sys
from pathlib import Path

import dogbreed.contract

CONTRACT_DIR = Path(dogbreed.contract.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_contract_imports_only_the_standard_library_and_our_errors():
    allowed_own = {"..errors", ".", ".channels", ".hyperparams", ".metrics"}
    for path in sorted(CONTRACT_DIR.glob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            assert name in allowed_own or (top and top in sys.stdlib_module_names), f"{path.name} imports {name}"
