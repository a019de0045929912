"""Start-up stays light: commands that do no extraction never import the heavy libraries.

A sleep lab runs ``respsep`` thousands of times from shell scripts; ``respsep --help`` and
``respsep info`` must not pay for torch (~1.5-3 s), scipy.signal (~1 s), NeuroKit2 (~3 s) or
matplotlib. Each command runs in a fresh interpreter and reports which modules it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from resp_sep.writers import write_edf

HEAVY = ["torch", "scipy.signal", "scipy.special", "neurokit2", "matplotlib", "pandas", "sklearn"]

_PROBE = """
import json, sys
from resp_sep.cli import main
code = main(sys.argv[1:])
heavy = %r
print("@@" + json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
""" % (HEAVY,)


def _loaded(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120, check=False)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("@@")]
    assert line, r.stdout + r.stderr
    return json.loads(line[-1][2:])


@pytest.fixture(scope="module")
def edf(tmp_path_factory):
    p = tmp_path_factory.mktemp("startup") / "night.edf"
    t = np.arange(256 * 120) / 256
    write_edf(p, [{"label": "ECG", "fs": 256, "unit": "mV", "data": np.sin(2 * np.pi * 1.2 * t)},
                  {"label": "Thorax", "fs": 32, "unit": "a.u.", "data": np.sin(2 * np.pi * 0.25 * t[::8])}])
    return p


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["extract", "--help"], ["info", "--help"]])
def test_help_imports_nothing_heavy(args):
    r = _loaded(args)
    assert r["code"] == 0
    assert r["loaded"] == []


def test_info_imports_nothing_heavy(edf):
    for args in (["info", str(edf)], ["info", str(edf), "--json"]):
        r = _loaded(args)
        assert r["code"] == 0
        assert r["loaded"] == []


def test_cli_makes_idle_threads_sleep_unless_told_otherwise():
    """OMP_WAIT_POLICY=PASSIVE before torch loads: spinning threads made extraction 13x slower on a busy machine."""
    import os

    code = "import os, resp_sep.cli; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert r.stdout.strip() == "PASSIVE"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, check=False)
    assert r.stdout.strip() == "ACTIVE"


def test_worker_init_sets_threads_without_importing_torch():
    code = ("import sys; from resp_sep.batch import _worker_init; _worker_init(1); "
            "print('torch' in sys.modules); import torch; print(torch.get_num_threads())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.stdout.split() == ["False", "1"], r.stdout + r.stderr


def test_heuristic_method_never_imports_torch(tmp_path):
    """A heuristic source (no separator) pays neither torch's import nor its memory."""
    from resp_sep.simulate import simulate

    sim = simulate(duration_s=180, fs=256, seed=1)
    p = tmp_path / "sim.edf"
    write_edf(p, [{"label": "ECG", "fs": 256, "unit": "mV", "data": sim.ecg}])
    r = _loaded(["extract", str(p), "--out", str(tmp_path / "r.csv"), "--method", "ecg_r_amplitude", "--quiet"])
    assert r["code"] == 0
    assert "torch" not in r["loaded"] and (tmp_path / "r.csv").exists()
