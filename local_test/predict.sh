#!/usr/bin/env bash
# Send an image to the local endpoint and print the response.
# Usage: local_test/predict.sh [IMAGE_FILE] [CONTENT_TYPE] [ACCEPT]
#   IMAGE_FILE    default local_test/sample_dog.jpg
#   CONTENT_TYPE  default from the file extension (image/jpeg, image/png, application/json, application/x-npy)
#   ACCEPT        default application/json
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
file="${1:-$here/sample_dog.jpg}"
[ -f "$file" ] || { echo "predict: no such file: $file" >&2; exit 1; }
case "${2:-}" in
  "")
    case "${file,,}" in
      *.jpg|*.jpeg) content_type=image/jpeg ;;
      *.png) content_type=image/png ;;
      *.json) content_type=application/json ;;
      *.npy) content_type=application/x-npy ;;
      *) content_type=application/x-image ;;
    esac ;;
  *) content_type="$2" ;;
esac
curl --silent --show-error --fail-with-body \
  --data-binary "@$file" -H "Content-Type: $content_type" -H "Accept: ${3:-application/json}" \
  "http://127.0.0.1:${PORT:-8080}/invocations"
echo
