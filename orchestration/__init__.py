"""Laptop-side orchestration of the dog-breed image on SageMaker: tuning, training, endpoint, report."""

import logging
import os

# Before any `import sagemaker`: SDK v2's deprecation notice and its INFO lines about config files
# it did not find would otherwise clutter every command's output.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
