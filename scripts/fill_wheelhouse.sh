#!/usr/bin/env bash
# Fill a wheelhouse with every wheel the image needs, using this host's pip configuration
# (its indexes, proxy and CA), building wheels for source-only packages (smdebug's
# pyinstrument_cext) here so the image build needs neither a compiler nor network access.
# Usage: scripts/fill_wheelhouse.sh WHEELHOUSE_DIR
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 WHEELHOUSE_DIR" >&2
  exit 2
fi
wheelhouse="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/../container/requirements.txt"
python="${PYTHON:-python3}"

mkdir -p "$wheelhouse"
echo "fill_wheelhouse: collecting wheels for $requirements into $wheelhouse" >&2
# pip wheel reuses wheels already in the wheelhouse (--find-links), so refills are quick.
"$python" -m pip wheel --quiet --progress-bar off --find-links "$wheelhouse" \
  --wheel-dir "$wheelhouse" -r "$requirements" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
echo "fill_wheelhouse: $(find "$wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1)" >&2
