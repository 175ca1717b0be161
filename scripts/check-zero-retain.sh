#!/usr/bin/env bash
# Checks that a function of a release binary does no reference counting:
# its disassembly must call none of swift_retain, swift_release and their
# variants. Used on Examples' ReadBench, whose `walk` follows RCU-protected
# links with RCUReference. Usage: check-zero-retain.sh BINARY MANGLED-NAME-PART
set -euo pipefail
binary="${1:?usage: check-zero-retain.sh BINARY MANGLED-NAME-PART}"
function="${2:?usage: check-zero-retain.sh BINARY MANGLED-NAME-PART}"
disassembly="$(objdump -d --no-show-raw-insn "$binary" | awk -v name="$function" '
    /^[0-9a-f]+ <.*>:$/ { inside = index($0, name) > 0; if (inside) found = 1 }
    inside { print }
    END { if (!found) exit 3 }')" || { echo "check-zero-retain: no function matching $function in $binary" >&2; exit 1; }
counting="$(grep -E "call.*<swift_(retain|release|unknownObjectRetain|unknownObjectRelease|bridgeObjectRetain|bridgeObjectRelease)" <<<"$disassembly" || true)"
if [[ -n "$counting" ]]; then
    echo "check-zero-retain: $function in $binary does reference counting:" >&2
    echo "$counting" >&2
    exit 1
fi
echo "check-zero-retain: $function ($(grep -c . <<<"$disassembly") lines of disassembly) calls no retain or release"
