#!/usr/bin/env bash
# Quick start 1: install (first run only) and run the demo on a simulated recording.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/respsep demo "$@"
