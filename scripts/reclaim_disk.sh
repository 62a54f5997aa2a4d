#!/usr/bin/env bash
# CI housekeeping on a reused machine: remove what earlier runs of this project left in Docker (stopped
# containers, superseded image tags, test-registry pushes; build cache too when space is short), then fail at
# once, with the figures, if the disk still cannot hold a run. dog-breed-classifier:latest stays as build cache.
# Usage: scripts/reclaim_disk.sh [GIB_NEEDED]
#   default 15 with the image cached, else 25: measured peaks of a CI run were 10.4 and 24.3 GiB.
set -euo pipefail

ours=label=org.opencontainers.image.title=dog-breed-classifier  # set by container/Dockerfile
keep=dog-breed-classifier:latest
needed_gib="${1:-$(docker image inspect "$keep" >/dev/null 2>&1 && echo 15 || echo 25)}"
tmp="${TMPDIR:-/tmp}"

log() { printf 'reclaim_disk: %s\n' "$*" >&2; }
free_gib() { df --block-size=1G --output=avail "$1" | tail -1 | tr -d ' '; }
enough() { [ "$(free_gib "$docker_root")" -ge "$needed_gib" ] && [ "$(free_gib "$tmp")" -ge "$needed_gib" ]; }
report() { log "$1: $(free_gib "$docker_root") GiB free for Docker ($docker_root), $(free_gib "$tmp") GiB for $tmp"; }

docker_root="$(docker info --format '{{.DockerRootDir}}')"
report "before"

mapfile -t stopped < <(docker ps --all --quiet --filter "$ours" --filter status=exited --filter status=created)
[ ${#stopped[@]} -eq 0 ] || docker rm --volumes "${stopped[@]}" >/dev/null
# Superseded tags, and earlier builds that a newer one untagged (the builder stage's cache has no label: kept).
mapfile -t old < <(
  docker images --filter "$ours" --format '{{.Repository}}:{{.Tag}}' | grep -vxF -e "$keep" -e '<none>:<none>' || true
  docker images --quiet --filter "$ours" --filter dangling=true
)
[ ${#old[@]} -eq 0 ] || docker rmi "${old[@]}" >/dev/null 2>&1 || true  # an image still in use is kept
enough || docker image prune --force >/dev/null  # untagged build stages: the next build is slower

report "after (a run needs about $needed_gib)"
if ! enough; then
  log "error: a run needs about $needed_gib GiB free in both; the largest users:"
  docker system df >&2
  du -xsh "$tmp"/* 2>/dev/null | sort -h | tail -5 >&2
  exit 1
fi
