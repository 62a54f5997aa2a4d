#!/usr/bin/env bash
# Make a Docker engine and docker-compose available: install Debian's engine when no daemon
# answers, then start it. Containers of this project run with --network host, so the engine
# starts without a bridge or iptables rules. Usage: scripts/ensure_docker.sh
set -euo pipefail

log() { printf 'ensure_docker: %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "no Docker engine or docker-compose found; install Docker (https://docs.docker.com/engine/install/) and retry"
    exit 1
  fi
  log "installing docker.io and docker-compose from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd --bridge=none --iptables=false >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/dockerd.log"; exit 1; }
fi
log "engine ready: $(docker version --format '{{.Server.Version}}')"
