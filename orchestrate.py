#!/usr/bin/env python3
"""Tune, train (Debugger + Profiler), report, deploy, predict, batch-transform and clean up the dog-breed image on
SageMaker.

Usage: orchestrate.py {hpo,train,report,deploy,predict,cleanup,transform,all} [--config FILE] [flags]; -h for all.
"""

import sys

from orchestration.cli import main

if __name__ == "__main__":
    sys.exit(main())
