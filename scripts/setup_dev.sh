#!/usr/bin/env bash
# Everything the tests and the local workflow need on this machine: a Docker engine with
# docker-compose, shellcheck, and .venv with requirements-dev.txt (re-installed when it changes).
# Usage: scripts/setup_dev.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/ensure_docker.sh"

if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup_dev: installing shellcheck" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi

venv="$root/.venv"
stamp="$venv/.requirements.sha256"
wanted="$(cat "$root/requirements-dev.txt" "$root/container/requirements.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "setup_dev: installing Python packages into $venv (a few minutes the first time)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --progress-bar off -r "$root/requirements-dev.txt" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$wanted" >"$stamp"
fi
