#!/usr/bin/env bash
# Compile-failure checks: each *.swift here names the diagnostic it must
# produce (`// expect-error: ...`) or states that it compiles
# (`// expect-success`). Compiled to SIL (ownership errors are found there,
# not by the type checker) against the URCU and MemoryRegions modules of a debug
# build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
swift build --target URCU >/dev/null
swift build --target MemoryRegions >/dev/null
bin=$(swift build --show-bin-path)
flags=(-emit-sil -o /dev/null -swift-version 6 -I "$bin/Modules"
    -Xcc "-fmodule-map-file=$bin/CURCU.build/module.modulemap"
    -Xcc "-fmodule-map-file=$root/Sources/CLibURCU/module.modulemap"
    -Xcc "-I$root/Sources/CURCU/include" $(pkg-config --cflags-only-I liburcu-memb | sed 's/-I/-Xcc -I/g'))
passed=0 failed=0
for file in "$here"/*.swift; do
    name=$(basename "$file")
    if output=$(swiftc "${flags[@]}" "$file" 2>&1); then status=0; else status=$?; fi
    if grep -q '^// expect-success' "$file"; then
        if ((status == 0)); then ok=1; else ok=0; fi
    else
        expected=$(sed -n 's|^// expect-error: ||p' "$file")
        if ((status != 0)) && grep -qF -- "$expected" <<<"$output"; then ok=1; else ok=0; fi
    fi
    if ((ok)); then
        echo "compile-fail: $name ok"; passed=$((passed + 1))
    else
        echo "compile-fail: $name FAILED (exit $status)"; echo "$output" | head -20; failed=$((failed + 1))
    fi
done
echo "compile-fail: $passed passed, $failed failed"
((failed == 0))
