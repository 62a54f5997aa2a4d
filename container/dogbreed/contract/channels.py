"""SageMaker channel names: each is mounted at /opt/ml/input/data/<name>."""

TRAIN, VALID, TEST = "train", "valid", "test"
DATA_CHANNELS = (TRAIN, VALID, TEST)  # what orchestrate.py uploads: DATA_S3/<name>/<class folders>
VALID_ALIASES = (VALID, "validation", "val")  # accepted for the validation split
# Users who upload dogImages/ as one channel: it holds train/ valid/ [test/] folders.
COMBINED = "training"
# Optional: one ResNet50 state_dict file to start from instead of the image's ImageNet weights.
PRETRAINED = "pretrained"
