#!/usr/bin/env bash
# Everything the tests and the local workflow need on this machine: a Docker engine with
# docker-compose, shellcheck, docker-registry, and .venv with requirements-dev.txt and our packages (re-installed
# when they change).
# Usage: scripts/setup_dev.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/ensure_docker.sh"

# Debian packages the tests use: shellcheck (lint), docker-registry (the push tests' registry), nginx (the
# front of `serve`, which the server tests run on this host) and tcmalloc (the model server's heap, as in the image).
missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
# grep reads all of ldconfig's list (-q would stop early, and under pipefail a SIGPIPE would count as missing).
ldconfig -p | grep libtcmalloc_minimal.so.4 >/dev/null || missing+=(libtcmalloc-minimal4)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_dev: please install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup_dev: installing ${missing[*]}" >&2
  apt-get update -qq
  # RUNLEVEL=1: Debian's maintainer scripts then start no service (nginx would otherwise listen on port 80).
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

venv="$root/.venv"
stamp="$venv/.requirements.sha256"
wanted="$(cat "$root/requirements-dev.txt" "$root/container/requirements.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "setup_dev: installing Python packages into $venv (a few minutes the first time)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --progress-bar off -r "$root/requirements-dev.txt" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  # Our own packages (pyproject.toml), editable: a code change needs no reinstall.
  "$venv/bin/pip" install --quiet --progress-bar off --no-deps --no-build-isolation --editable "$root"
  echo "$wanted" >"$stamp"
fi
