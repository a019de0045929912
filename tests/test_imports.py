"""Every module of the package, and every script and benchmark, imports (a deleted module is caught here)."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

import pytest

import resp_sep

REPO = Path(__file__).resolve().parents[1]
# resp_sep.__main__ is `python -m resp_sep`: importing it runs the program
MODULES = sorted(m.name for m in pkgutil.walk_packages(resp_sep.__path__, "resp_sep.") if m.name != "resp_sep.__main__")
SCRIPTS = sorted(str(p.relative_to(REPO)) for d in ("scripts", "benchmarks") for p in (REPO / d).glob("*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_package_module_imports(name):
    importlib.import_module(name)


@pytest.mark.parametrize("rel", SCRIPTS)
def test_script_imports(rel, monkeypatch):
    path = REPO / rel
    monkeypatch.syspath_prepend(str(path.parent))  # benchmarks import their _common
    spec = importlib.util.spec_from_file_location(f"_respsep_{path.parent.name}_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)
    spec.loader.exec_module(mod)  # guarded by `if __name__ == "__main__"`: defines, does not run


def test_public_names_resolve():
    for name in resp_sep.__all__:
        assert getattr(resp_sep, name) is not None
