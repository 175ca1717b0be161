#!/usr/bin/env bash
# Model-checks the TLA+ specification and the proofs, and fails if any
# expectation breaks: every fixed configuration must pass, every buggy one
# must be refuted by the property named for it, nothing else.
#
# Prints a Markdown table: config, expected, result, distinct states, depth
# (of the state graph when the check passes, of the counterexample when it
# fails), seconds.  Each TLC runs with one worker, two rows at a time (see
# SPEC_JOBS below); its state directories and logs
# go to Spec/states/ (git-ignored), emptied at the start of each run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

jar="$(Spec/tlc-jar.sh)"
states="$root/Spec/states"
rm -rf "$states"
mkdir -p "$states"

# directory | module | config | expected | deadlock check (on/off)
#
# expected: pass | invariant:<name> | property:<name> | refinement:<abstract
# module> | temporal | deadlock.  property:<name> is an action property of
# the config that TLC names, or a temporal property when the config lists
# that one property only (TLC does not say which temporal property failed).
# Buggy configurations run with deadlock checking off, so that only their
# invariant can refute them, except the one row that expects the deadlock.
checks=(
    "Spec|MCRCU|MCRCU|pass|on"
    "Spec|MCRCU|MCRCU_CallJoinsGracePeriodInProgress|invariant:CallbackWaitsForPreexistingReaders|off"
    "Spec|MCPercpuRef|MCPercpuRef|pass|on"
    "Spec|MCPercpuRef|MCPercpuRef_SumBeforeGracePeriod|invariant:NoReleaseWhileHeld|off"
    "Spec|MCPercpuRef|MCPercpuRef_BiasDroppedBeforeSum|invariant:NoReleaseWhileHeld|off"
    "Spec|MCLifecycle|MCLifecycle|pass|on"
    "Spec|MCLifecycle|MCLifecycleTwoThreads|pass|on"
    "Spec|MCLifecycle|MCLifecycleWide|pass|on"
    "Spec|MCLifecycle|MCLifecycleOneFlavor|pass|on"
    "Spec|MCLifecycle|MCLifecycleTableFull|pass|on"
    "Spec|MCLifecycle|MCLifecycle_InternalGracePeriod|invariant:NoUseAfterFree|off"
    "Spec|MCLifecycle|MCLifecycle_InternalGracePeriodAtomic|invariant:NoUseAfterFree|off"
    "Spec|MCLifecycle|MCLifecycle_RingCount|invariant:FreeOnlyWhenUnreferenced|off"
    "Spec|MCLifecycle|MCLifecycle_RingCount|deadlock|on"
    "Spec|MCLifecycle|MCLifecycle_RingCountHonestUser|pass|on"
    "Spec|MCLifecycle|MCLifecycle_BudgetLeak|invariant:BudgetMatchesLiveContexts|off"
    "Spec|MCLifecycle|MCLifecycle_GetNotTryget|invariant:NoReferenceAfterRelease|off"
    "Spec|MCLifecycle|MCLifecycleTwoThreads_InternalGracePeriod|invariant:NoUseAfterFree|off"
    "Spec|MCLifecycle|MCLifecycle_FreeWithPercpuRefFlavor|invariant:NoUseAfterFree|off"
    "Spec|MCLifecycle|MCLifecycle_UnlockBeforeTryget|invariant:NoUseAfterFree|off"
    "Spec|MCLifecycle|MCLifecycle_KillBeforeUnpublish|property:LookupFailsOnlyWhenUnpublished|off"
    "Spec|MCLifecycle|MCLifecycle_TrygetNotLive|property:NoLookupSucceedsOnDeadRef|off"
    "Spec|MCLifecycle|MCLifecycle_FreeInCallback|property:FreedOnlyWhereBlockingAllowed|off"
    "Spec|MCLifecycle|MCLifecycle_UsersReleaseSkipsKillReqs|property:DestroyedEventuallyFreed|off"
    "Spec|MCLifecycle|MCLifecycle_ReqsReleaseTwice|invariant:CallbacksNotRequeued|off"
    "Spec|MCMemoryRegion|MemoryRegion|pass|on"
    "Spec|MCMemoryRegion|MemoryRegionWide|pass|on"
    "Spec|MCMemoryRegion|MemoryRegion_PutBeforeGracePeriodKernelPercpu|pass|on"
    "Spec|MCMemoryRegion|MemoryRegion_PutBeforeGracePeriod|property:PlainGetNeverRevives|off"
    "Spec|MCMemoryRegion|MemoryRegion_NoSynchronize|property:PlainGetNeverRevives|off"
    "Spec|MCMemoryRegion|MemoryRegion_IsZeroShortcut|invariant:FreedOnlyAfterRelease|off"
    "Spec|MCTableGrowth|MCLifecycleTableGrowth|pass|on"
    "Spec|MCTableGrowth|MCLifecycle_OldTableFreedWithoutGracePeriod|invariant:NoReadOfFreedTable|off"
    "Spec|MCTableGrowth|MCLifecycle_TableGrowthLosesSlot|invariant:TableHoldsExactlyTheLiveContexts|off"
    "Proofs|PercpuRefRefinement|PercpuRefRefinement|pass|on"
    "Proofs|PercpuRefRefinement|PercpuRefRefinement_SumBeforeGracePeriod|refinement:AtomicCount|off"
    "Proofs|LifecycleRefinement|LifecycleRefinement|pass|on"
    "Proofs|LifecycleRefinement|LifecycleRefinement_InternalGracePeriod|refinement:SafeReclamation|off"
    "Proofs|LifecycleIndInv|LifecycleIndInvBase|pass|on"
    "Proofs|LifecycleIndInv|LifecycleIndInv|pass|on"
    "Proofs|LifecycleIndInv|LifecycleIndInvWideBase|pass|on"
    "Proofs|LifecycleIndInv|LifecycleIndInvWide|pass|on"
    "Proofs|TableGrowthRefinement|TableGrowthRefinement|pass|on"
    "Proofs|TableGrowthRefinement|TableGrowthRefinement_OldTableFreedWithoutGracePeriod|refinement:FreedWhenUnreachable|off"
    "Proofs|TableGrowthIndInv|TableGrowthIndInvBase|pass|on"
    "Proofs|TableGrowthIndInv|TableGrowthIndInv|pass|on"
    "Proofs|TableGrowthIndInv|TableGrowthIndInvWideBase|pass|on"
    "Proofs|TableGrowthIndInv|TableGrowthIndInvWide|pass|on"
    "Proofs|MemoryRegionRefinement|MemoryRegionRefinement|pass|on"
    "Proofs|MemoryRegionRefinement|MemoryRegionRefinement_NoSynchronize|refinement:FreedWhenUnreachable|off"
    "Proofs|MemoryRegionRefinement|MemoryRegionRefinement_PutBeforeGracePeriod|refinement:FreedWhenUnreachable|off"
    "Proofs|MemoryRegionRefinement|MemoryRegionRefinement_IsZeroShortcut|refinement:FreedWhenUnreachable|off"
    "Proofs|MemoryRegionRefinement|MemoryRegionRefinement_PutBeforeGracePeriodKernelPercpu|pass|on"
    "Proofs|MemoryRegionIndInv|MemoryRegionIndInvBase|pass|on"
    "Proofs|MemoryRegionIndInv|MemoryRegionIndInv|pass|on"
    "Proofs|MemoryRegionIndInv|MemoryRegionIndInvWideBase|pass|on"
    "Proofs|MemoryRegionIndInv|MemoryRegionIndInvWide|pass|on"
)

# The names listed under PROPERTIES in a config.
properties_of() {
    awk '/^[A-Z]+$/ { section = $1; next }
         section == "PROPERTIES" && NF == 1 && $1 !~ /^\\\*/ { print $1 }' "$1"
}

# What TLC concluded, in the vocabulary of the expected column.
verdict() {
    local log="$1" cfg="$2" line
    if grep -q '^Model checking completed. No error has been found.' "$log"; then
        echo pass
    elif line="$(grep -m1 -E '^Error: Invariant [A-Za-z0-9_!]+ is violated' "$log")"; then
        echo "invariant:$(sed -E 's/^Error: Invariant ([A-Za-z0-9_!]+) is violated.*/\1/' <<<"$line")"
    elif line="$(grep -m1 -E '^Error: Action property [A-Za-z0-9_]+ is violated' "$log")"; then
        echo "property:$(sed -E 's/^Error: Action property ([A-Za-z0-9_]+) is violated.*/\1/' <<<"$line")"
    elif line="$(grep -m1 -E '^Error: Action property .* of module [A-Za-z0-9_]+ is violated' "$log")"; then
        echo "refinement:$(sed -E 's/.* of module ([A-Za-z0-9_]+) is violated.*/\1/' <<<"$line")"
    elif grep -q '^Error: Temporal properties were violated' "$log"; then
        local properties
        mapfile -t properties < <(properties_of "$cfg")
        if (( ${#properties[@]} == 1 )); then
            echo "property:${properties[0]}"
        else
            echo temporal
        fi
    elif grep -q '^Error: Deadlock reached' "$log"; then
        echo deadlock
    else
        echo error
    fi
}

distinct_states() {
    grep -E '^[0-9]+ states generated, [0-9]+ distinct states found' "$1" \
        | tail -n 1 | sed -E 's/^[0-9]+ states generated, ([0-9]+) distinct.*/\1/'
}

depth() {
    local log="$1"
    if grep -q '^The depth of the complete state graph search is' "$log" \
        && grep -q '^Model checking completed' "$log"; then
        sed -nE 's/^The depth of the complete state graph search is ([0-9]+)\..*/\1/p' "$log" | tail -n 1
    else
        grep -E '^State [0-9]+:' "$log" | sed -E 's/^State ([0-9]+):.*/\1/' \
            | sort -n | tail -n 1
    fi
}

# Runs row $1 of checks: its TLC log goes to $states/<tag>.log, its table
# row to $states/<index>.row, and a file $states/<index>.unexpected marks a
# result other than the expected one.
run_check() {
    local index="$1" dir module config expected deadlock tag log flags t0 t1 result seconds n d mark
    IFS='|' read -r dir module config expected deadlock <<<"${checks[$index]}"
    tag="$config"
    [[ "$expected" == deadlock ]] && tag="$config.deadlock"
    log="$states/$tag.log"
    flags=()
    [[ "$deadlock" == off ]] && flags+=(-deadlock)
    echo "check.sh: $dir/$config.cfg (expect $expected)" >&2
    t0="$(date +%s.%N)"
    # TLC unpacks its standard modules into java.io.tmpdir and deletes them
    # when it ends: two rows sharing /tmp lose them under each other
    # ("source file 'Naturals.tla' has apparently been deleted").
    mkdir -p "$states/$tag.tmp"
    (
        cd "$root/$dir"
        java -XX:+UseParallelGC -Djava.io.tmpdir="$states/$tag.tmp" -DTLA-Library="$root/Spec" -cp "$jar" \
            tlc2.TLC -workers 1 -nowarning ${flags[@]+"${flags[@]}"} \
            -metadir "$states/$tag" -config "$config.cfg" "$module.tla"
    ) >"$log" 2>&1 || true
    t1="$(date +%s.%N)"
    result="$(verdict "$log" "$root/$dir/$config.cfg")"
    seconds="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    # A log with neither (TLC stopped early) leaves them empty: "-".
    n="$(distinct_states "$log" || true)"
    d="$(depth "$log" || true)"
    mark=""
    if [[ "$result" != "$expected" ]]; then
        mark=" **UNEXPECTED**"
        touch "$states/$index.unexpected"
        echo "check.sh: $dir/$config.cfg: expected $expected, got $result; see $log" >&2
    fi
    echo "| $dir/$config.cfg | $expected | $result$mark | ${n:--} | ${d:--} | $seconds |" >"$states/$index.row"
}

# Rows run SPEC_JOBS at a time (default: one per core, at most 2), each TLC
# with one worker: the rows are independent, and one worker keeps each
# row's state count and counterexample the same from run to run. Seconds
# are each row's own wall time, measured while the other job ran.
jobs="${SPEC_JOBS:-$(nproc)}"
(( jobs > 2 )) && [[ -z "${SPEC_JOBS:-}" ]] && jobs=2
# The longest rows start first (about 3 and 2 minutes where the others
# take seconds), so that the two lanes end together.
longest=(MCLifecycleTwoThreads LifecycleIndInvWide)
order=()
for name in "${longest[@]}"; do
    for index in "${!checks[@]}"; do
        IFS='|' read -r _ _ config _ _ <<<"${checks[$index]}"
        [[ "$config" == "$name" ]] && order+=("$index")
    done
done
for index in "${!checks[@]}"; do
    [[ " ${order[*]} " == *" $index "* ]] || order+=("$index")
done
start_all="$(date +%s.%N)"
running=0
for index in "${order[@]}"; do
    if (( running >= jobs )); then
        wait -n || true
        running=$((running - 1))
    fi
    run_check "$index" &
    running=$((running + 1))
done
wait
failures=0
rows=()
for index in "${!checks[@]}"; do
    [[ -e "$states/$index.unexpected" ]] && failures=$((failures + 1))
    rows+=("$(cat "$states/$index.row")")
done
end_all="$(date +%s.%N)"

echo
echo "| config | expected | result | distinct states | depth | seconds |"
echo "|---|---|---|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
awk -v a="$start_all" -v b="$end_all" -v n="${#checks[@]}" -v f="$failures" \
    'BEGIN { printf "%d checks, %d unexpected, %.0f s in total\n", n, f, b - a }'
# The closing line CI reads: checks that met their expectation, and not.
echo "spec: $(( ${#checks[@]} - failures )) passed, $failures failed"

if (( failures > 0 )); then
    exit 1
fi
