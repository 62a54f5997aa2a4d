#!/usr/bin/env bash
# Serve the model in local_test/test_dir/model on 127.0.0.1:${PORT:-8080} (Ctrl-C stops).
# Usage: local_test/serve_local.sh [IMAGE]   (default dog-breed-classifier:latest)
set -euo pipefail

image="${1:-dog-breed-classifier:latest}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${PORT:-8080}"

exec docker run --rm --init --network host -e "SAGEMAKER_BIND_TO_PORT=$port" \
  -v "$here/test_dir/model:/opt/ml/model:ro" "$image" serve
