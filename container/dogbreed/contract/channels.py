"""SageMaker channel names: each is mounted at /opt/ml/input/data/<name>."""

TRAIN, VALID, TEST = "train", "valid", "test"
VALID_ALIASES = (VALID, "validation", "val")  # accepted for the validation split
SPLIT_CHANNELS = (TRAIN, *VALID_ALIASES, TEST)  # channels, or folders of one channel, that hold one split each
# Users who upload their data as one channel: it holds train/ [valid/] [test/] folders (dogImages/), or class folders.
COMBINED = "training"
# Optional: one ResNet50 state_dict file to start from instead of the image's ImageNet weights.
PRETRAINED = "pretrained"
