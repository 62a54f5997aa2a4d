#!/usr/bin/env bash
# Build the dog-breed-classifier image and push it to Amazon ECR.
#
# Air-gapped machines (no image registry reachable) are detected and built for without flags:
# the base image is bootstrapped from Debian packages and Python packages come from a
# wheelhouse filled through this host's pip configuration, served to the build on 127.0.0.1.
set -euo pipefail

usage() {
  cat <<USAGE
usage: $0 [--no-push] [--region REGION] [--offline|--online] [IMAGE_NAME]

  IMAGE_NAME        image and ECR repository name (default: dog-breed-classifier)
  --no-push         build the local image IMAGE_NAME:latest only
  --region REGION   AWS region (default: \$AWS_REGION, \$AWS_DEFAULT_REGION, then 'aws configure get region')
  --offline         force the air-gapped build; --online forces the registry/PyPI build

Environment: TORCH_FLAVOUR (cuda|cpu), PRETRAINED_WEIGHTS (imagenet|none), BASE_IMAGE,
BUILDER_IMAGE, WHEELHOUSE_DIR, WHEELHOUSE_PORT (38081), and ECR_REGISTRY (push to this registry host instead of
ACCOUNT.dkr.ecr.REGION.amazonaws.com, e.g. a mirror or a test registry).
USAGE
}

die() { printf 'build_and_push: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'build_and_push: %s\n' "$*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="dog-breed-classifier"
push=true
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
mode=auto
while [ $# -gt 0 ]; do
  case "$1" in
    --no-push) push=false ;;
    --region) [ $# -ge 2 ] || die "--region needs a value"; region="$2"; shift ;;
    --offline) mode=offline ;;
    --online) mode=online ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $1" ;;
    *) image="$1" ;;
  esac
  shift
done

command -v docker >/dev/null 2>&1 || die "docker CLI not found; install Docker"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start it, e.g. scripts/ensure_docker.sh)"
if $push; then
  command -v aws >/dev/null 2>&1 || die "aws CLI not found; install it (pip install awscli) or use --no-push"
fi

base_image="${BASE_IMAGE:-python:3.11-slim-bookworm}"
builder_image="${BUILDER_IMAGE:-python:3.11-bookworm}"
if [ "$mode" = auto ]; then
  mode=online
  if ! docker image inspect "$base_image" >/dev/null 2>&1 && ! docker pull --quiet "$base_image" >/dev/null 2>&1; then
    say "cannot pull $base_image: no registry reachable, building air-gapped"
    mode=offline
  fi
fi

build_args=(--build-arg "TORCH_FLAVOUR=${TORCH_FLAVOUR:-cuda}")
wheel_server_pid=""
cleanup() { [ -z "$wheel_server_pid" ] || kill "$wheel_server_pid" 2>/dev/null || true; }
trap cleanup EXIT

if [ "$mode" = offline ]; then
  base_image="dogbreed-base:bookworm"
  builder_image="$base_image"
  "$here/scripts/make_base_image.sh" "$base_image"
  wheelhouse="${WHEELHOUSE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dogbreed/wheelhouse}"
  "$here/scripts/fill_wheelhouse.sh" "$wheelhouse"
  # A fixed port: the URL is a build arg, and a changing one would defeat Docker's layer cache.
  port="${WHEELHOUSE_PORT:-38081}"
  python3 -m http.server --bind 127.0.0.1 --directory "$wheelhouse" "$port" >/dev/null 2>&1 &
  wheel_server_pid=$!
  for _ in $(seq 1 50); do
    (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  kill -0 "$wheel_server_pid" 2>/dev/null || die "cannot serve the wheelhouse on 127.0.0.1:$port (set WHEELHOUSE_PORT)"
  # No download of ImageNet weights is possible without internet access.
  weights="${PRETRAINED_WEIGHTS:-none}"
  build_args+=(--network host --build-arg "WHEELHOUSE_URL=http://127.0.0.1:$port/")
  say "wheelhouse served on 127.0.0.1:$port; PRETRAINED_WEIGHTS=$weights"
else
  weights="${PRETRAINED_WEIGHTS:-imagenet}"
fi
build_args+=(--build-arg "BASE_IMAGE=$base_image" --build-arg "BUILDER_IMAGE=$builder_image"
  --build-arg "PRETRAINED_WEIGHTS=$weights")

# The 28.x docker client wants the buildx plugin for BuildKit; the legacy builder needs nothing.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi
git_tag="$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo nogit)"
say "building $image:latest ($mode, base $base_image)"
docker build "${build_args[@]}" -t "$image:latest" -t "$image:$git_tag" "$here/container" >&2
say "built $image:latest and $image:$git_tag ($(docker image inspect --format '{{.Size}}' "$image:latest" | awk '{printf "%.1f GB", $1/1e9}'))"

if ! $push; then
  echo "$image:latest"
  exit 0
fi

[ -n "$region" ] || region="$(aws configure get region 2>/dev/null || true)"
[ -n "$region" ] || die "no AWS region: pass --region or set AWS_REGION"
account="$(aws sts get-caller-identity --query Account --output text 2>/dev/null)" \
  || die "cannot get the AWS account from STS: check your AWS credentials"
registry="${ECR_REGISTRY:-$account.dkr.ecr.$region.amazonaws.com}"

if ! aws ecr describe-repositories --region "$region" --repository-names "$image" >/dev/null 2>&1; then
  say "creating ECR repository $image (scan on push)"
  aws ecr create-repository --region "$region" --repository-name "$image" \
    --image-scanning-configuration scanOnPush=true >/dev/null \
    || die "cannot create ECR repository $image in $region"
fi
aws ecr get-login-password --region "$region" 2>/dev/null \
  | docker login --username AWS --password-stdin "$registry" >/dev/null 2>&1 \
  || die "docker login to $registry failed"

# Push the commit tag first, so 'latest' never names an image that is not also pinned.
for tag in "$git_tag" latest; do
  docker tag "$image:latest" "$registry/$image:$tag"
  docker push --quiet "$registry/$image:$tag" >/dev/null || die "docker push of $registry/$image:$tag failed"
  say "pushed $registry/$image:$tag"
done
echo "$registry/$image:latest"
