#!/usr/bin/env python3
"""Tune, train (Debugger + Profiler), report, deploy, predict and clean up the dog-breed image on SageMaker.

Usage: orchestrate.py {hpo,train,report,deploy,predict,cleanup,all} [--config FILE] [flags]; -h for all flags.
"""

import sys

from orchestration.cli import main

if __name__ == "__main__":
    sys.exit(main())
