#!/usr/bin/env bash
# Quick start 2: install (first run only) with test extras and run the test suite.
# Tests on real recordings use ../shared/data and skip, with the reason, when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh dev
exec .venv/bin/python -m pytest -q "$@"
