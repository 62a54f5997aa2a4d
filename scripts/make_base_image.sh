#!/usr/bin/env bash
# Build a Debian 12 (Python 3.11) base image from Debian's packages, for machines where no image
# registry can be reached. Usage: scripts/make_base_image.sh [TAG]   (default dogbreed-base:bookworm)
set -euo pipefail

tag="${1:-dogbreed-base:bookworm}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "make_base_image: $tag already present" >&2
  exit 0
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "make_base_image: installing mmdebstrap" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
echo "make_base_image: bootstrapping Debian bookworm into $tag (about a minute)" >&2
mmdebstrap --quiet --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$workdir/base.tar"
docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  "$workdir/base.tar" "$tag" >/dev/null
echo "make_base_image: built $tag" >&2
