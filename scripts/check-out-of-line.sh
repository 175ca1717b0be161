#!/usr/bin/env bash
# Checks a binary built without the package trait InlineFastPaths: it must
# call liburcu's read side in the shared libraries (urcu_memb_read_lock…)
# and hold none of the static-inline bodies of liburcu's urcu/static
# headers (_urcu_memb_read_lock…), the LGPL-2.1 code the trait compiles
# into callers. Usage: check-out-of-line.sh BINARY
set -euo pipefail
binary="${1:?usage: check-out-of-line.sh BINARY}"
operations='read_lock|read_unlock|read_ongoing|quiescent_state|thread_online|thread_offline'
symbols="$(nm "$binary")"

inline="$(grep -E " [tT] _urcu_(memb|mb|bp|qsbr)_($operations)$" <<<"$symbols" || true)"
if [[ -n "$inline" ]]; then
    echo "check-out-of-line: $binary holds liburcu's inline read side:" >&2
    echo "$inline" >&2
    exit 1
fi
# QSBR's read lock and unlock are empty, and liburcu's non-LGPL header
# defines them inline for everyone: its quiescent state is the call to see.
for call in urcu_memb_read_lock urcu_mb_read_lock urcu_bp_read_lock urcu_qsbr_quiescent_state; do
    if ! grep -qE " U ${call}$" <<<"$symbols"; then
        echo "check-out-of-line: $binary does not call liburcu's ${call}" >&2
        exit 1
    fi
done
echo "check-out-of-line: $binary calls liburcu's out-of-line read side (4 flavors) and holds no inline copy of it"
