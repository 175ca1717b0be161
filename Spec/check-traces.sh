#!/usr/bin/env bash
# Checks recorded traces with TLC: of the Swift ContextTable against
# Spec/Lifecycle.tla (Spec/TraceLifecycle.tla explains how), and of the
# MemoryRegionTable against Spec/MemoryRegion.tla (TraceMemoryRegion.tla).
# Each trace is a module DIR/<name>.tla with its DIR/<name>.cfg, as
# Tests/ConformanceTests writes them, extending one of the two.  Prints one
# line per trace:
#   accepted <name> <events>
#   rejected <name> <events>: events 1..K are a behaviour; event K+1 is not
#            (nor any event recorded as overlapping it): <record>
#   rejected <name> <events>: every event is matched, but the final state is
#            not the implementation's: <the variables that differ>
# and exits non-zero if TLC could not run.  The TLC log of each trace is
# kept as DIR/<name>.log.  Rerun one trace by hand with:
#   Spec/check-traces.sh DIR <name>
set -euo pipefail

dir="${1:?usage: check-traces.sh <dir> [trace name]}"
only="${2:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jar="$("$root/Spec/tlc-jar.sh")"
cd "$dir"

# Each trace is a short TLC run: the JIT's first tier alone halves the CPU
# time it takes.
jvm_options="-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss4m"

# Runs TLC on trace $1 with configuration $2, its log to $1.log.
run_tlc() {
    # TLC unpacks its standard modules into java.io.tmpdir: runs that share
    # one race on those files.
    local tmp="states/$1.tmp"
    mkdir -p "$tmp"
    java $jvm_options -Djava.io.tmpdir="$tmp" -DTLA-Library="$root/Spec" -cp "$jar" tlc2.TLC -workers 1 \
        -nowarning -deadlock -metadir "states/$1" -config "$2" "$1.tla" >"$1.log" 2>&1 || true
    rm -rf "states/$1" "$tmp"
}

check_one() {
    local name="$1" log="$1.log" events matched
    events="$(grep -c '^ *\[a |->' "$name.tla" || true)"
    run_tlc "$name" "$name.cfg"
    if grep -q '^Error: Invariant TraceIncomplete is violated' "$log"; then
        echo "accepted $name $events"
    elif grep -q '^Model checking completed. No error has been found.' "$log"; then
        # Again, printing the longest prefix matched (slower).
        sed 's/^NEXT TraceNext$/NEXT DiagnosedTraceNext/' "$name.cfg" >"$name.diagnose.cfg"
        run_tlc "$name" "$name.diagnose.cfg"
        rm -f "$name.diagnose.cfg"
        matched="$(sed -nE 's/^<<"matched through event", ([0-9]+)>>$/\1/p' "$log" | sort -n | tail -n 1)"
        matched="${matched:-0}"
        if [[ "$matched" -ge "$events" ]]; then
            echo "rejected $name $events: every event is matched, but the final state is not the implementation's:" \
                "$(sed -nE 's/^<<"final state differs in", (.*)>>$/\1/p' "$log" | sort -u | tr '\n' ' ')"
        else
            echo "rejected $name $events: events 1..$matched are a behaviour; event $((matched + 1)) is not" \
                "(nor any event recorded as overlapping it):" \
                "$(grep '^ *\[a |->' "$name.tla" | sed -n "$((matched + 1))p" | sed -E 's/^ *//; s/,$//')"
        fi
    else
        echo "error $name: TLC did not finish; see $dir/$log"
        return 1
    fi
}
export -f run_tlc check_one
export root jar jvm_options dir

if [[ -n "$only" ]]; then
    check_one "$only"
else
    # Two at a time: the machines have two cores.
    ls -- *.tla | sed 's/\.tla$//' | xargs -P 2 -I{} bash -c 'check_one "$@"' _ {}
fi
