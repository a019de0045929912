"""Never silent garbage: broken models (exit 5), bad options (exit 2), unwritable outputs (exit 6),
all-or-nothing outputs, clean interrupts of -j batches, and the wheel carrying the shipped models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, make_tiny_checkpoint

from resp_sep.errors import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_MODEL, EXIT_OUTPUT, EXIT_USAGE


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Path:
    """A 2.5-min simulated recording (ECG, PPG, thorax and nasal references)."""
    from resp_sep.simulate import simulate, write_simulation

    d = tmp_path_factory.mktemp("rec")
    return Path(write_simulation(simulate(duration_s=150, fs=250, seed=5), d / "night.edf"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt")


def _broken_ckpt(d: Path, name: str, edit) -> str:
    good = torch.load(make_tiny_checkpoint(d / f"src-{name}"), weights_only=True)
    edit(good)
    p = d / name
    torch.save(good, p)
    return str(p)


def _nan_weights(ck):
    k = next(k for k, v in ck["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    ck["state_dict"][k] = ck["state_dict"][k].clone().fill_(float("nan"))


def _inf_weight(ck):
    k = next(k for k, v in ck["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    t = ck["state_dict"][k].clone()
    t.view(-1)[3] = float("inf")
    ck["state_dict"][k] = t


BROKEN_MODELS = {
    "nan_weights": (_nan_weights, "nan or infinite"),
    "inf_weight": (_inf_weight, "nan or infinite"),
    "encoder_out_of_range": (lambda ck: ck.update(resp_encoder=9), "out of range"),
    "encoder_negative": (lambda ck: ck.update(resp_encoder=-1), "out of range"),
    "encoder_not_int": (lambda ck: ck.update(resp_encoder="two"), "integer"),
    "config_mismatch": (lambda ck: ck["model_config"].update(channels=[16, 16, 32, 32]), "do not match"),
    "config_invalid": (lambda ck: ck["model_config"].update(n_encoders=3), "invalid model_config"),
    "config_unknown_key": (lambda ck: ck["model_config"].update(colour="red"), "invalid model_config"),
    "tensor_missing": (lambda ck: ck["state_dict"].pop(next(iter(ck["state_dict"]))), "missing"),
    "not_respsep": (lambda ck: ck.update(model_name="ResNet"), "not a respsep checkpoint"),
    "bad_signal": (lambda ck: ck.update(signal="eeg"), "signal must be"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_MODELS))
def test_broken_model_is_refused_with_exit_5(case, tmp_path, rec, run_cli):
    edit, fragment = BROKEN_MODELS[case]
    ck = _broken_ckpt(tmp_path, f"{case}.pt", edit)
    out = tmp_path / "out.csv"
    code, so, se = run_cli(["extract", rec, "--out", out, "--model", ck])
    assert code == EXIT_MODEL, (so, se)
    lines = se.strip().splitlines()
    assert len(lines) == 1 and f"{case}.pt" in lines[0] and fragment in lines[0].lower(), se
    assert not out.exists()


def test_nan_model_refused_by_every_entry_point(tmp_path, rec, run_cli):
    ck = _broken_ckpt(tmp_path, "nan.pt", _nan_weights)
    d = tmp_path / "out"
    for args in (["extract", rec, "--out", tmp_path / "r.csv"], ["extract", rec.parent, "--out-dir", d, "-j", "2"],
                 ["eval", rec], ["demo", "--out-dir", d, "--minutes", "2"]):
        code, so, se = run_cli([*args, "--model", ck])
        assert code == EXIT_MODEL, (args, so, se)
        assert "nan.pt" in se and "NaN" in se and len(se.strip().splitlines()) == 1
        assert not d.exists() and not (tmp_path / "r.csv").exists(), args  # nothing, not even the folder


def test_truncated_checkpoint_is_refused_in_one_line(tmp_path, rec, run_cli):
    raw = Path(make_tiny_checkpoint(tmp_path / "src.pt")).read_bytes()
    ck = tmp_path / "cut.pt"
    ck.write_bytes(raw[: len(raw) // 3])
    code, _, se = run_cli(["extract", rec, "--out", tmp_path / "r.csv", "--model", ck])
    assert code == EXIT_MODEL and "cut.pt" in se and len(se.strip().splitlines()) == 1, se


def test_long_messages_are_cut_between_words():
    from resp_sep.checkpoint import _clip

    text = "unexpected key(s) in state_dict: encoder.0.weight, encoder.0.bias, encoder.1.running_mean"
    for n in range(10, len(text)):
        c = _clip(text, n)
        assert c.endswith(" ...") and text.startswith(c[:-4]) and text[len(c) - 4] in " ,;:", (n, c)
    assert _clip(text, 500) == text


def test_shipped_models_pass_the_sanity_checks():
    from resp_sep.checkpoint import check_model

    paths = check_model(None, ["ecg", "ppg"])
    assert len(paths) == 2 and all(p.parent.name == "models" and p.parent.parent.name == "resp_sep" for p in paths)


# ------------------------------------------------------------------------------------ usage: exit 2

USAGE = [
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--batch-size", "0"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--batch-size", "-3"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--device", "xyz"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--threads", "-2"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--jobs", "0"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--hop", "nan"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--out-rate", "0"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--signal", "eeg"],
    ["extract", "{dir}", "--out-dir", "{tmp}/o", "--signal", "xyz"],
    ["extract", "{rec}", "--out", "{tmp}/x.edf", "--format", "csv"],
    ["extract", "{rec}", "--out", "{tmp}/x.csv", "--format", "edf"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--format", "wav"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--plot", "{tmp}/p.xyz"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--plot", "{tmp}/p"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--rates", "{tmp}/r.csv"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--rates", "{tmp}/r.png"],
    ["extract", "{rec}", "--out", "{rec}"],
    ["extract", "{rec}", "--out", "{tmp}/r.csv", "--shard", "3/2"],
    ["eval", "{rec}", "--window", "0"],
    ["eval", "{rec}", "--window", "-60"],
    ["eval", "{rec}", "--ref", "abdomen"],
    ["eval", "{rec}", "--device", "tpu"],
    ["eval", "{rec}", "--start", "100", "--end", "50"],
    ["eval", "{rec}", "--plot", "{tmp}/e.docx"],
    ["train", "--simulate", "1", "--batch-size", "0", "--out", "{tmp}/m.pt"],
    ["train", "--simulate", "1", "--epochs", "0", "--out", "{tmp}/m.pt"],
    ["train", "--simulate", "1", "--lr", "-1", "--out", "{tmp}/m.pt"],
    ["train", "--simulate", "1", "--device", "xyz", "--out", "{tmp}/m.pt"],
    ["train", "--simulate", "1", "--threads", "-2", "--out", "{tmp}/m.pt"],
    ["train", "--simulate", "1", "--val-fraction", "1.5", "--out", "{tmp}/m.pt"],
    ["train", "--simulate", "-1", "--out", "{tmp}/m.pt"],
    ["simulate", "{tmp}/s.edf", "--seed", "-1"],
    ["simulate", "{tmp}/s.edf", "--minutes", "0"],
    ["demo", "--out-dir", "{tmp}/d", "--minutes", "0.5"],
    ["demo", "--out-dir", "{tmp}/d", "--seed", "-4"],
]


@pytest.mark.parametrize("args", USAGE, ids=[" ".join(a[:1] + a[3:]).replace("{tmp}/", "") for a in USAGE])
def test_bad_option_is_a_usage_error_before_any_work(args, tmp_path, rec, run_cli):
    before = set(os.listdir(tmp_path))
    args = [a.format(rec=rec, tmp=tmp_path, dir=rec.parent) for a in args]
    code, so, se = run_cli(args)
    assert code == EXIT_USAGE, (args, so, se)
    assert len(se.strip().splitlines()) == 1 and "Traceback" not in se + so, se
    assert set(os.listdir(tmp_path)) == before


# ----------------------------------------------------------------------------------- outputs: exit 6

OUTPUT_ERRORS = [
    (["--out", "{tmp}/nodir/r.csv"], "does not exist"),
    (["--out", "{tmp}/r.csv", "--rates", "{tmp}/nodir/r.csv"], "does not exist"),
    (["--out", "{tmp}/r.csv", "--plot", "{tmp}/nodir/p.png"], "does not exist"),
    (["--out", "{tmp}"], "is a folder"),
    (["--out-dir", "{rec}"], "not a folder"),
    (["--out-dir", "{rec}/sub"], "is a file"),
]


@pytest.mark.parametrize("opts,fragment", OUTPUT_ERRORS)
def test_unwritable_output_fails_before_any_work(opts, fragment, tmp_path, rec, run_cli, tiny):
    before = set(os.listdir(tmp_path))
    code, so, se = run_cli(["extract", rec, *[o.format(tmp=tmp_path, rec=rec) for o in opts], "--model", tiny])
    assert code == EXIT_OUTPUT, (so, se)
    assert len(se.strip().splitlines()) == 1 and fragment in se, se
    assert set(os.listdir(tmp_path)) == before


def test_failure_while_writing_leaves_no_output(tmp_path, rec, run_cli, tiny, monkeypatch):
    """The figure fails after the CSVs were written: none of them appears, no temporary is left."""
    import resp_sep.plots

    def boom(path, *a, **k):
        from resp_sep.writers import atomic_output

        with atomic_output(path) as tmp:
            tmp.write_bytes(b"half a figure")
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(resp_sep.plots, "plot_extraction", boom)
    code, _so, se = run_cli(["extract", rec, "--out", tmp_path / "r.csv", "--rates", tmp_path / "rates.csv",
                            "--plot", tmp_path / "r.png", "--model", tiny])
    assert code == EXIT_OUTPUT and "No space left" in se, se
    assert os.listdir(tmp_path) == []


def test_rerun_completes_missing_outputs(tmp_path, rec, run_cli, tiny):
    """An output present alone (e.g. from an older run) does not make the rerun skip its companions."""
    out, rates = tmp_path / "r.csv", tmp_path / "rates.csv"
    code, _, se = run_cli(["extract", rec, "--out", out, "--model", tiny])
    assert code == 0, se
    code, so, se = run_cli(["extract", rec, "--out", out, "--rates", rates, "--model", tiny])
    assert code == 0 and rates.exists() and "skipped" not in so, (so, se)
    code, so, _ = run_cli(["extract", rec, "--out", out, "--rates", rates, "--model", tiny])
    assert code == 0 and "skipped" in so


def test_out_edf_suffix_means_edf(tmp_path, rec, run_cli, tiny):
    from resp_sep.io import read_recording

    code, _, se = run_cli(["extract", rec, "--out", tmp_path / "r.edf", "--model", tiny])
    assert code == 0, se
    assert read_recording(tmp_path / "r.edf").labels == ["Resp respsep"]


def test_batch_with_only_failures_leaves_no_out_dir(tmp_path, run_cli, tiny):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.edf").write_bytes(b"0       " + b"x" * 300)
    (src / "b.edf").write_bytes(b"0       " + b"y" * 300)
    code, _, se = run_cli(["extract", src, "--out-dir", tmp_path / "new" / "out", "--model", tiny])
    assert code == 4 and se.count("error:") == 2
    assert not (tmp_path / "new" / "out").exists()


# --------------------------------------------------------------------------------------------- train


def test_train_resume_of_a_finished_run_is_refused_up_front(tmp_path, run_cli):
    out = tmp_path / "m.pt"
    last = torch.load(make_tiny_checkpoint(tmp_path / "src.pt"), weights_only=True)
    last.update(optimizer={}, scheduler={}, epoch=1, rng={}, best={"metric": 1.0, "epoch": 2},
                metrics={"history": []})
    torch.save(last, tmp_path / "m.last.pt")
    code, _, se = run_cli(["train", "--simulate", "1", "--epochs", "2", "--out", out, "--resume", "-q"])
    assert code == EXIT_USAGE and "already finished" in se and "--epochs" in se, se
    assert not (tmp_path / "m.cache").exists()
    code, _, se = run_cli(["train", "--simulate", "1", "--epochs", "2", "--out", tmp_path / "x.pt", "--resume", "-q"])
    assert code == EXIT_MODEL and "x.last.pt" in se


def test_failed_train_leaves_no_cache(tmp_path, run_cli):
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"0       " + b"z" * 400)
    code, _, se = run_cli(["train", bad, "--out", tmp_path / "m.pt", "-q"])
    assert code == EXIT_INPUT, se
    assert sorted(os.listdir(tmp_path)) == ["bad.edf"]


# ---------------------------------------------------------------------------------------------- eval


def test_eval_table_not_cut_when_piped(tmp_path, rec, tiny):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "RESPSEP_DEBUG")}
    p = subprocess.run([sys.executable, "-m", "resp_sep", "eval", str(rec), "--model", tiny, "--baselines"],
                       capture_output=True, text=True, env=env, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    assert max(len(ln) for ln in p.stdout.splitlines()) > 80
    assert "\u2026" not in p.stdout  # rich's ellipsis: a cut column


# -------------------------------------------------------------------------------------- interrupts


def _batch(tmp_path: Path, n: int = 10, seconds: int = 600) -> Path:
    from resp_sep.simulate import simulate, write_simulation

    d = tmp_path / "in"
    d.mkdir()
    sim = simulate(duration_s=seconds, fs=250, seed=1)
    first = write_simulation(sim, d / "n00.edf")
    for i in range(1, n):
        os.link(first, d / f"n{i:02d}.edf")
    return d


def _terminal_signals() -> None:
    """In the child: SIGINT/SIGTERM as in a user's terminal session, whatever the test runner ignores.

    A suite started in the background (``cmd &`` in a script, some CI runners) inherits SIGINT
    ignored, and respsep rightly keeps an ignored signal ignored (``nohup``): the test would then
    measure the runner, not respsep.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(args, how: str, cwd: Path, wait_for: str = "ok ", wait_s: float = 0.0):
    env = {k: v for k, v in os.environ.items() if k != "RESPSEP_DEBUG"}
    p = subprocess.Popen([sys.executable, "-m", "resp_sep", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=cwd, env=env,
                         preexec_fn=_terminal_signals)
    first = ""
    if wait_for:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # the batch is running once a file is reported
            first = p.stdout.readline()
            if first.startswith(wait_for) or not first:
                break
        assert first.startswith(wait_for), first
    else:
        time.sleep(wait_s)
        assert p.poll() is None, "finished before the interrupt"
    t = time.monotonic()
    if how == "ctrl-c":  # the terminal sends SIGINT to the whole foreground process group
        os.killpg(p.pid, signal.SIGINT)
    elif how == "sigint-parent":
        os.kill(p.pid, signal.SIGINT)
    elif how == "sigterm-group":
        os.killpg(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    return p.returncode, time.monotonic() - t, first + out, err, p.pid


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigint-parent", "sigterm-group"])
def test_interrupted_batch_stops_at_once_and_cleanly(how, tmp_path, tiny):
    src = _batch(tmp_path)
    out_dir = tmp_path / "out"
    code, dt, out, err, sid = _interrupt(["extract", src, "--out-dir", out_dir, "-j", "2", "--model", tiny,
                                          "--rates", "yes"], how, tmp_path)
    assert code == EXIT_INTERRUPTED, (out, err)
    assert dt < 2.0, f"took {dt:.2f} s to stop"
    assert "Traceback" not in out + err, err
    assert "interrupted" in err and "not done" in out, (out, err)
    names = sorted(os.listdir(out_dir))
    assert not [n for n in names if n.startswith(".")], names  # no temporary file left
    assert len(names) < 20  # queued files were not started
    done = sorted(n[: -len(".resp.csv")] for n in names if n.endswith(".resp.csv"))
    assert done == sorted(n[: -len(".rates.csv")] for n in names if n.endswith(".rates.csv"))
    for n in done:  # every output present is complete
        lines = (out_dir / f"{n}.resp.csv").read_text().splitlines()
        assert lines[0] == "time_s,resp" and len(lines) == 600 * 25 + 1
    time.sleep(0.5)
    assert _alive_in_session(sid) == [], "worker processes left running"


def _alive_in_session(sid: int) -> list[str]:
    """Processes (not zombies) of the session the batch ran in."""
    ps = subprocess.run(["ps", "-e", "-o", "sid=,stat=,pid="], capture_output=True, text=True,
                        check=False).stdout.splitlines()
    return [ln for ln in ps if ln.split()[0] == str(sid) and not ln.split()[1].startswith("Z")]


@pytest.mark.slow
def test_single_file_interrupt_says_so(tmp_path):
    from resp_sep.simulate import simulate, write_simulation

    rec = write_simulation(simulate(duration_s=3 * 3600, fs=200, seed=2), tmp_path / "long.edf")
    # the separator with dense segments (hop 2 s): an extraction that surely outlasts the 4-s wait
    # (on ONNX Runtime the separator takes ~6 s at hop 6 s and ~15 s at hop 2 s on a quiet machine;
    # the default fusion can finish a 3-h record in about 4 s)
    code, dt, _out, err, _ = _interrupt(["extract", rec, "--out", tmp_path / "r.csv", "--rates", tmp_path / "q.csv",
                                        "--method", "separator", "--hop", "2"],
                                       "ctrl-c", tmp_path, wait_for="", wait_s=4.0)
    assert code == EXIT_INTERRUPTED and "interrupted" in err and "Traceback" not in err, err
    assert dt < 2.0
    assert sorted(os.listdir(tmp_path)) == ["long.edf"]


# -------------------------------------------------------------------------------------------- wheel


@pytest.mark.slow
def test_wheel_ships_the_models_and_extracts(tmp_path):
    """Build the wheel, install it in a fresh venv (dependencies from this one), extract with it."""
    import shutil
    import sysconfig
    import zipfile

    src = tmp_path / "src"
    shutil.copytree(REPO / "resp_sep", src / "resp_sep", ignore=shutil.ignore_patterns("__pycache__", "*.last.pt"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(src)], check=True, capture_output=True, timeout=300)
    (whl,) = wheels.glob("respsep-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert {"resp_sep/models/respsep-ecg.pt", "resp_sep/models/respsep-ppg.pt"} <= set(names)
    assert not [n for n in names if n.endswith(".last.pt")]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies (torch, numpy, ...) of this environment, after the venv's own site-packages
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "_deps_of_test_env.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(whl)], check=True,
                   capture_output=True, timeout=300)
    work = tmp_path / "work"  # outside the repository: nothing but the wheel can provide resp_sep
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import resp_sep; print(resp_sep.__file__)"], cwd=work,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(site), where
    exe = venv / "bin" / "respsep"
    subprocess.run([str(exe), "simulate", "sim.edf", "--minutes", "2", "-q"], cwd=work, check=True, timeout=300)
    # the separator alone, so that the shipped model (the wheel's own copy) must be found and used
    p = subprocess.run([str(exe), "extract", "sim.edf", "--out", "r.csv", "--method", "separator", "--json"], cwd=work,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    (res,) = json.loads(p.stdout)["results"]
    assert res["status"] == "ok" and res["model"].startswith(site), res
    assert (work / "r.csv").read_text().startswith("time_s,resp\n")


def test_batch_refuses_two_recordings_with_one_output_name(tmp_path, rec, run_cli, tiny):
    import shutil

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(rec, tmp_path / sub / "night.edf")
    code, _, se = run_cli(["extract", tmp_path / "a", tmp_path / "b", "--out-dir", tmp_path / "out", "--model", tiny])
    assert code == EXIT_USAGE and "would both write" in se and len(se.strip().splitlines()) == 1, se
    assert not (tmp_path / "out").exists()


def test_signals_ignored_at_start_stay_ignored():
    """``nohup respsep ...`` ignores SIGHUP: respsep must not turn it back into a stop."""
    from resp_sep.interrupts import termination_as_interrupt

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with termination_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)
