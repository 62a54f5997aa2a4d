#!/usr/bin/env bash
# The whole local job on a fresh machine: Docker engine, image build, training on the generated
# sample dataset, then serving on 127.0.0.1:${PORT:-8080} (docker-compose) and one prediction.
# Usage: local_test/run_local.sh        (stop the server with: docker-compose down)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/ensure_docker.sh
image="$(./build_and_push.sh --no-push | tail -n 1)"
local_test/train_local.sh "$image"

export IMAGE="$image"
docker-compose up -d serve
echo "run_local: waiting for the server on 127.0.0.1:${PORT:-8080}" >&2
for _ in $(seq 1 60); do
  curl --silent --fail "http://127.0.0.1:${PORT:-8080}/ping" >/dev/null && break
  sleep 1
done
echo "run_local: prediction for local_test/sample_dog.jpg (class probabilities, breed 001 first):" >&2
local_test/predict.sh
cat >&2 <<DONE
run_local: serving on http://127.0.0.1:${PORT:-8080}
  try:  local_test/predict.sh local_test/sample_dog.jpg image/jpeg 'application/json;verbose=true'
  stop: docker-compose down
DONE
