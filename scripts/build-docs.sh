#!/usr/bin/env bash
# Builds the DocC documentation of the public modules, with DocC's warnings
# (a broken ``symbol`` link, an unknown topic) as errors, and fails when a
# public symbol of those modules has no doc comment, naming each one.
#
# No swift-docc-plugin (it would be a dependency of every user): the
# modules' symbol graphs are extracted from the debug build's .swiftmodule
# files into .build/docs/symbol-graphs/<Module>/, then the toolchain's
# `docc convert` builds .build/docs/<Module>.doccarchive from
# Sources/<Module>/<Module>.docc. `swift package dump-symbol-graph` is not
# used: it builds with every package trait on, in the same build directory,
# so the next `swift build` rebuilds everything.
#
# Usage: scripts/build-docs.sh [swift]
set -euo pipefail

# The documented modules, each with a catalog Sources/<Module>/<Module>.docc.
modules=(URCU PercpuRef ContextTable URCUTesting MemoryRegions)

swift="${1:-swift}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
docc="$(dirname "$(readlink -f "$(command -v "$swift")")")/docc"
[[ -x "$docc" ]] || docc="$(command -v docc)"

# The modules, as `swift build --build-tests` (make test) builds them: then
# this build has nothing to do.
"$swift" build --build-tests >/dev/null
bin="$("$swift" build --build-tests --show-bin-path)"
triple="$(basename "$(dirname "$bin")")"

out=.build/docs
graphs="$out/symbol-graphs"
rm -rf "$graphs"
for module in "${modules[@]}"; do
    mkdir -p "$graphs/$module"
    "$swift" symbolgraph-extract -module-name "$module" -target "$triple" \
        -I "$bin/Modules" -I "/usr/include/$triple" \
        -Xcc -fmodule-map-file="$bin/CURCU.build/module.modulemap" -Xcc -I -Xcc Sources/CURCU/include \
        -Xcc -fmodule-map-file=Sources/CLibURCU/module.modulemap \
        -minimum-access-level public -skip-synthesized-members \
        -output-dir "$graphs/$module"
done

# Documentation coverage: every public or open symbol declared by these
# modules has a doc comment (one it inherits from the protocol requirement it
# implements counts: DocC shows that one).
python3 - "$graphs" "${modules[@]}" <<'PYTHON'
import glob, json, os, sys

graphs, modules = sys.argv[1], sys.argv[2:]
public, undocumented = 0, []
for module in modules:
    for path in sorted(glob.glob(os.path.join(graphs, module, "*.symbols.json"))):
        for symbol in json.load(open(path))["symbols"]:
            if symbol["accessLevel"] not in ("public", "open"):
                continue
            public += 1
            lines = symbol.get("docComment", {}).get("lines", [])
            if not any(line["text"].strip() for line in lines):
                where = symbol.get("location", {})
                file = where.get("uri", "").replace("file://" + os.getcwd() + "/", "")
                line = where.get("position", {}).get("line", -1) + 1
                name = ".".join(symbol["pathComponents"])
                undocumented.append(f"{file}:{line}: {module}.{name} ({symbol['kind']['displayName']})")
print(f"build-docs: {public - len(undocumented)} of {public} public symbols documented")
if undocumented:
    print("build-docs: public symbols without a doc comment:", *undocumented, sep="\n  ", file=sys.stderr)
    sys.exit(1)
PYTHON

for module in "${modules[@]}"; do
    rm -rf "$out/$module.doccarchive"
    "$docc" convert "Sources/$module/$module.docc" \
        --additional-symbol-graph-dir "$graphs/$module" \
        --fallback-display-name "$module" --fallback-bundle-identifier "swift-urcu.$module" \
        --warnings-as-errors \
        --output-path "$out/$module.doccarchive" | sed '/^$/d'   # docc's diagnostics are on stdout
    echo "build-docs: $out/$module.doccarchive"
done
