#!/usr/bin/env bash
# Runs a build command and fails if the compiler warned about any file of
# this repository (dependencies fetched into .build are not ours to fix).
# The build's output is shown as usual. Usage: no-new-warnings.sh COMMAND…
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
(( status == 0 )) || exit "$status"
warnings="$(grep -E "^$root/(Sources|Tests|Benchmarks|Examples/Sources)/[^:]+:[0-9]+:[0-9]+: warning:" "$log" | sort -u)"
if [[ -n "$warnings" ]]; then
    echo "no-new-warnings: the build warned about the project's own code:" >&2
    echo "$warnings" >&2
    exit 1
fi
