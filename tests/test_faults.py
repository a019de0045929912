"""Fault injection: disk full, read-only output, unwritable $TMPDIR, kill -9 while writing, truncation while reading.

Every case runs without root: a write that raises ENOSPC (monkeypatched, and for real under
RLIMIT_FSIZE in a child process), a folder reported read-only, a TMPDIR that does not exist, a
child killed while its outputs are half written, a file cut short after its header was checked.
The contract (README "When something is wrong"): one line naming the output or the input and the
problem, the documented exit code, no partial output, and a rerun that completes.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from resp_sep.errors import EXIT_INPUT, EXIT_OUTPUT

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Path:
    from resp_sep.simulate import simulate, write_simulation

    d = tmp_path_factory.mktemp("faults")
    return write_simulation(simulate(duration_s=240, fs=128.0, seed=21), d / "night.edf")


def _child(code: str, args: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.Popen:
    """``python -c CODE`` with ``sys.argv[1:] = args``: a respsep run with a fault set up in the child."""
    e = {k: v for k, v in os.environ.items() if k != "RESPSEP_DEBUG"}
    e.update(env or {})
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO, env=e, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


RUN = "import sys; from resp_sep.cli import main; sys.exit(main(sys.argv[1:]))"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_disk_full_names_the_output_and_leaves_nothing(rec, tmp_path, run_cli, monkeypatch):
    import resp_sep.writers as W

    def full(*a, **k):  # the disk fills up while the CSV's rows are written to its temporary
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(W, "format_rows", full)
    out = tmp_path / "resp.csv"
    code, _, err = run_cli(["extract", rec, "--out", out, "--rates", tmp_path / "rates.csv"])
    assert code == EXIT_OUTPUT, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error:") and str(out) in line and "No space left on device" in line
    assert ".tmp" not in line  # the output the user asked for, not its hidden temporary
    assert list(tmp_path.iterdir()) == []


def test_file_size_limit_in_a_real_process(rec, tmp_path):
    """RLIMIT_FSIZE makes a real write fail (EFBIG): exit 6, one line, no partial file."""
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); " + RUN)
    p = _child(code, ["extract", rec, "--out", tmp_path / "resp.csv"])
    out, err = p.communicate(timeout=120)
    assert p.returncode == EXIT_OUTPUT, err
    assert len(err.strip().splitlines()) == 1 and "resp.csv" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_read_only_output_folder_is_named_as_such(rec, tmp_path, run_cli, monkeypatch):
    import resp_sep.writers as W

    class RO:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(W.os, "access", lambda p, mode: False)
    monkeypatch.setattr(W.os, "statvfs", lambda p: RO())
    code, _, err = run_cli(["extract", rec, "--out", tmp_path / "resp.csv"])
    assert code == EXIT_OUTPUT and "read-only file system" in err and "permission denied" not in err
    code, _, err = run_cli(["extract", rec, "--out-dir", tmp_path / "out"])
    assert code == EXIT_OUTPUT and "read-only file system" in err


def test_unwritable_tmpdir_completes_with_a_notice(rec, tmp_path):
    """No temporary folder: the cleaned signals stay in memory, and the run says so."""
    # Python falls back from an unusable TMPDIR to /tmp, /var/tmp and the working folder: here none works
    nowhere = "import tempfile; tempfile.tempdir = '/nonexistent/respsep-tmp'\n" + RUN.replace("; ", "\n")
    p = _child(nowhere, ["extract", rec, "--out", tmp_path / "resp.csv", "--json"])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    import json

    (res,) = json.loads(out)["results"]
    assert "temporary folder cannot be written" in res["note"] and "memory" in res["note"]
    assert (tmp_path / "resp.csv").stat().st_size > 1000


def test_kill_during_writing_then_rerun_cleans_up_and_completes(rec, tmp_path):
    """kill -9 while the outputs are being written: the rerun removes the dead writer's temporaries."""
    hold = ("import sys, time, resp_sep.writers as W; real = W.write_csv\n"
            "def slow(path, *a, **k):\n"
            "    real(path, *a, **k); print('WRITING', flush=True); time.sleep(60)\n"
            "W.write_csv = slow\n" + RUN.replace("; ", "\n"))
    out = tmp_path / "out"
    p = _child(hold, ["extract", rec, "--out-dir", out, "--rates", "yes"])
    assert p.stdout.readline().strip() == "WRITING"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    left = _leftovers(out)
    assert left and all(".tmp" in n for n in left)  # what kill -9 leaves: hidden temporaries
    r = _child(RUN, ["extract", rec, "--out-dir", out, "--rates", "yes"])
    _, err = r.communicate(timeout=120)
    assert r.returncode == 0, err
    assert _leftovers(out) == []
    assert sorted(x.name for x in out.iterdir()) == ["night.rates.csv", "night.resp.csv", "respsep-summary.tsv"]
    # the killed run's summary said the recording was pending; the rerun's says it is done
    assert (out / "respsep-summary.tsv").read_text().splitlines()[1].split("\t")[2] == "ok"


def test_a_live_writers_temporary_is_not_removed(tmp_path):
    """Only dead writers' temporaries go: one of a running process (this one's parent) stays."""
    from resp_sep import writers as W

    final = tmp_path / "a.csv"
    alive = tmp_path / f".a.csv.{W._host()}-{os.getppid()}-deadbeef.tmp.csv"
    dead = tmp_path / f".a.csv.{W._host()}-{_dead_pid()}-deadbeef.tmp.csv"
    other = tmp_path / f".a.csv.another-host-{_dead_pid()}-deadbeef.tmp.csv"
    for f in (alive, dead, other):
        f.write_text("x")
    with W.atomic_output(final) as t:
        t.write_text("ok")
    assert final.read_text() == "ok" and alive.exists() and other.exists() and not dead.exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_file_truncated_while_being_read_is_an_input_error(rec, tmp_path, run_cli, monkeypatch):
    """The header was checked, then the file lost its tail (a copy still running, a disk error): exit 3."""
    import shutil

    import resp_sep.chunks as C
    from resp_sep.errors import InputError
    from resp_sep.io import read_recording

    p = tmp_path / "cut.edf"
    shutil.copy(rec, p)
    r = read_recording(p)
    with open(p, "r+b") as fh:
        fh.truncate(p.stat().st_size // 2)
    with pytest.raises(InputError, match="truncated or replaced while being read"):
        r.channel("ECG").read()
    shutil.copy(rec, p)
    real = C.scan

    def cut_then_scan(ch, *a, **k):
        with open(p, "r+b") as fh:
            fh.truncate(p.stat().st_size // 3)
        return real(ch, *a, **k)

    monkeypatch.setattr(C, "scan", cut_then_scan)
    code, _, err = run_cli(["extract", p, "--out", tmp_path / "resp.csv"])
    assert code == EXIT_INPUT, err
    assert "cut.edf" in err and "while being read" in err and "internal error" not in err
    assert not (tmp_path / "resp.csv").exists()


def test_leads_off_and_inverted_ecg_files(tmp_path, run_cli):
    """A leads-off stretch carries no ECG weight and is marked missing; an inverted ECG gives the same rates."""
    import csv

    from resp_sep.simulate import simulate
    from resp_sep.writers import write_edf

    sim = simulate(duration_s=1200, fs=256.0, seed=5)
    off = sim.ecg.copy()
    off[300 * 256:700 * 256] = 0.0
    files = {}
    for name, ecg, with_ppg in (("off", off, False), ("upright", sim.ecg, True), ("inverted", -sim.ecg, True)):
        sigs = [{"label": "ECG", "fs": 256.0, "unit": "mV", "data": ecg}]
        if with_ppg:
            sigs.append({"label": "Pleth", "fs": 256.0, "unit": "a.u.", "data": sim.ppg})
        files[name] = write_edf(tmp_path / f"{name}.edf", sigs)
    rates = {}
    for name, f in files.items():
        code, _, err = run_cli(["extract", f, "--out", tmp_path / f"{name}.csv", "--rates", tmp_path / f"{name}.r.csv"])
        assert code == 0, err
        with open(tmp_path / f"{name}.r.csv") as fh:
            rates[name] = list(csv.DictReader(fh))
    y = np.genfromtxt(tmp_path / "off.csv", delimiter=",", skip_header=1)
    inside = (y[:, 0] >= 300) & (y[:, 0] < 700)
    assert np.isnan(y[inside, 1]).mean() >= 0.9 and np.isfinite(y[~inside, 1]).mean() > 0.95
    for r in rates["off"]:  # rate windows clear of the fusion windows (30 s) that straddle the stretch's edges
        if 330 <= float(r["start_s"]) and float(r["end_s"]) <= 670:
            assert r["breaths_per_min"] in ("nan", "") and "ecg" not in r["sources"]
    a = np.array([float(r["breaths_per_min"]) for r in rates["upright"]])
    b = np.array([float(r["breaths_per_min"]) for r in rates["inverted"]])
    np.testing.assert_array_equal(a, b)
