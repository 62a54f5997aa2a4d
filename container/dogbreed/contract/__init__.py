"""What the container and the laptop side (orchestrate.py, bench/) agree on: channel names, hyperparameters
with their types and ranges, the metric line and its regexes.

Standard library and dogbreed.errors only (a unit test reads every import): orchestration imports this without torch.
"""
