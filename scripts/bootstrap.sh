#!/usr/bin/env bash
# Create .venv (once) and install respsep into it. Safe to run again: it only reinstalls when
# pyproject.toml changed. torch is installed first, pinned, so pip takes the local CPU build
# instead of pulling a multi-GB CUDA build to satisfy the package's own requirement.
# Usage: bash scripts/bootstrap.sh [EXTRAS]   (e.g. "dev" for the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=${1:-}
want="$(sha1sum pyproject.toml | cut -d' ' -f1)"
stamp=".venv/.respsep-installed${extras:+-$extras}"
# an install with test extras also serves a plain install
for s in "$stamp" .venv/.respsep-installed-dev; do
  if [ -f "$s" ] && [ "$(cat "$s")" = "$want" ] && { [ -z "$extras" ] || [ "$s" = "$stamp" ]; }; then
    exit 0
  fi
done
[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "installing respsep${extras:+[$extras]} into .venv (log: .venv/install.log) ..." >&2
{
  .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip || true
  .venv/bin/python -m pip install --disable-pip-version-check "torch==${TORCH_VERSION:-2.13.0}"
  .venv/bin/python -m pip install --disable-pip-version-check -e ".${extras:+[$extras]}"
} > .venv/install.log 2>&1 || { tail -20 .venv/install.log >&2; echo "install failed (see .venv/install.log)" >&2; exit 1; }
echo "$want" > "$stamp"
