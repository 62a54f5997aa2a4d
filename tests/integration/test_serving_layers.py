"""The serving layers stay apart: the HTTP side never imports torch, the model side never imports Flask (checked in
fresh interpreters, since this one has imported both)."""

import subprocess
import sys

from serving_fixtures import REPO


def test_app_never_imports_torch_and_predictor_never_imports_flask():
    app_side = "import sys, dogbreed.serving.app, dogbreed.serve; assert 'torch' not in sys.modules"
    model_side = "import sys, dogbreed.serving.predictor; assert 'flask' not in sys.modules"
    for code in (app_side, model_side):
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO / "container")
