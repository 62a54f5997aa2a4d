#!/usr/bin/env bash
# Train the image on local_test/test_dir (mounted as /opt/ml), as SageMaker would.
# Generates the sample dataset first when input/data/training is missing.
# Usage: local_test/train_local.sh [IMAGE]   (default dog-breed-classifier:latest)
set -euo pipefail

image="${1:-dog-breed-classifier:latest}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
test_dir="$here/test_dir"
user="$(id -u):$(id -g)"

if [ ! -d "$test_dir/input/data/training" ]; then
  echo "train_local: generating the sample dataset in $test_dir/input/data/training" >&2
  docker run --rm --user "$user" --network host -v "$here:/local_test" "$image" \
    python /local_test/make_sample_data.py /local_test/test_dir/input/data/training
fi
rm -rf "$test_dir/model" "$test_dir/output" "$test_dir/checkpoints"
mkdir -p "$test_dir/model" "$test_dir/output" "$test_dir/checkpoints"
docker run --rm --user "$user" --network host -v "$test_dir:/opt/ml" "$image" train
echo "train_local: model written to $test_dir/model" >&2
