#!/usr/bin/env bash
# Prints the path of the state graph of Spec/<module>.tla (MBTLifecycle
# unless given) under the configuration Spec/<config>.cfg, as TLC's `-dump dot` writes it, making
# it first if needed.  The model-based tests (Tests/ConformanceTests) walk
# it.  The graph is cached under Spec/states/graphs/ (git-ignored), named
# by a hash of every spec file it depends on, so a graph never outlives the
# spec it was made from.
set -euo pipefail

config="${1:?usage: state-graph.sh <config, e.g. MBTLifecycle> [module]}"
module="${2:-MBTLifecycle}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
spec="$root/Spec"
[[ -f "$spec/$config.cfg" ]] || { echo "state-graph.sh: no $spec/$config.cfg" >&2; exit 1; }

hash="$(cat "$spec/RCU.tla" "$spec/RefCount.tla" "$spec/Lifecycle.tla" "$spec/PercpuRef.tla" \
    "$spec/TableGrowth.tla" "$spec/$module.tla" "$spec/$config.cfg" | python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')"
graphs="$spec/states/graphs"
graph="$graphs/$config-$hash.dot"
if [[ ! -s "$graph" ]]; then
    jar="$("$spec/tlc-jar.sh")"
    mkdir -p "$graphs"
    work="$(mktemp -d "$graphs/tlc.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    if ! (cd "$spec" && java -XX:+UseParallelGC -Djava.io.tmpdir="$work" -cp "$jar" tlc2.TLC -workers 1 -nowarning -deadlock \
            -metadir "$work/states" -dump dot "$work/graph" -config "$config.cfg" "$module.tla") \
            >"$work/tlc.log" 2>&1 \
        || ! grep -q '^Model checking completed. No error has been found.' "$work/tlc.log"; then
        cat "$work/tlc.log" >&2
        echo "state-graph.sh: TLC failed on $config.cfg" >&2
        exit 1
    fi
    mv "$work/graph.dot" "$graph"
fi
echo "$graph"
