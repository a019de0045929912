"""Evaluation: scoring against references, pooled statistics, the eval CLI and the demo."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_checkpoint

from resp_sep.evaluate import evaluate_recording, read_pred_csv, summarise
from resp_sep.simulate import simulate, write_simulation
from resp_sep.writers import write_csv

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


TINY = []


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    TINY[:] = [make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", resp_encoder=1)]
    return TINY[0]


@pytest.fixture(scope="module")
def sim_rec(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    sim = simulate(duration_s=300, fs=250, seed=4, breathing="constant", rate_bpm=15)
    return sim, str(write_simulation(sim, d / "sim.edf"))


def test_perfect_prediction_scores_zero(tmp_path, sim_rec, tiny_ckpt):
    """Scoring the true respiration as a prediction gives ~0 MAE and |r| ~ 1 against the belt."""
    sim, path = sim_rec
    pred = tmp_path / "sim.resp.csv"
    n = int(len(sim.resp) / sim.fs * 25)
    t = np.arange(n) / 25
    write_csv(pred, ["time_s", "resp"], [t, np.interp(t, np.arange(len(sim.resp)) / sim.fs, sim.resp)])
    res = evaluate_recording(path, pred_csv=str(pred), refs=("thor", "nasal"), baselines=True, model=TINY[0])
    assert set(res.refs) == {"thor", "nasal"}
    rows = summarise([res])
    r = next(x for x in rows if x["ref"] == "thor" and x["method"] == "respsep")
    assert r["mae_bpm"] < 0.5 and r["coverage"] > 0.75 and r["abs_r"] > 0.8
    assert abs(r["bias_bpm"]) < 0.5
    methods = {x["method"] for x in rows if x["ref"] == "thor"}
    assert {"fusion", "fusion+separator", "separator", "separator_ppg", "ecg_rsa_sarkar2015", "ecg_r_amplitude",
            "ppg_amplitude", "reference:nasal"} <= methods


def test_wrong_prediction_scores_badly(tmp_path, sim_rec):
    """A prediction breathing at 24/min against a 15/min truth must show a ~9 breaths/min error."""
    sim, path = sim_rec
    pred = tmp_path / "bad.resp.csv"
    t = np.arange(int(300 * 25)) / 25
    write_csv(pred, ["time_s", "resp"], [t, np.sin(2 * np.pi * 0.4 * t)])
    rows = summarise([evaluate_recording(path, pred_csv=str(pred), refs=("thor",))])
    r = next(x for x in rows if x["method"] == "respsep")
    assert 8.0 < r["mae_bpm"] < 10.0 and r["bias_bpm"] > 8.0


def test_read_pred_csv_errors(tmp_path):
    from resp_sep.errors import InputError

    p = tmp_path / "x.csv"
    p.write_text("t,y\n1,2\n")
    with pytest.raises(InputError, match="header"):
        read_pred_csv(p)
    with pytest.raises(InputError, match="not found"):
        read_pred_csv(tmp_path / "none.csv")


def run(*args):
    r = subprocess.run([sys.executable, "-m", "resp_sep", *args], capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout, r.stderr


def test_eval_cli_json_csv_plot(tmp_path, tiny_ckpt, sim_rec):
    _, path = sim_rec
    code, so, se = run("eval", path, "--model", tiny_ckpt, "--ref", "all", "--json",
                       "--csv", str(tmp_path / "e.csv"), "--plot", str(tmp_path / "e.png"))
    assert code == 0, se
    rep = json.loads(so)
    assert rep["n_records"] == 1 and {r["ref"] for r in rep["pooled"]} == {"thor", "nasal"}
    assert (tmp_path / "e.csv").read_text().startswith("scope,ref,method,mae_bpm")
    assert (tmp_path / "e.png").stat().st_size > 10_000
    curves = {c["ref"]: c for c in rep["confidence"]}  # the confidence of respsep's windows against each reference
    assert set(curves) == {"thor", "nasal"}
    thor = next(r for r in rep["pooled"] if r["ref"] == "thor" and r["method"] == "respsep")
    c = curves["thor"]
    assert c["n_windows"] == thor["n_windows"] and c["curve"][-1]["mae_bpm"] == pytest.approx(thor["mae_bpm"])
    assert c["flagged"]["n_windows"] + c["ok"]["n_windows"] == c["n_windows"]
    code, so, se = run("eval", path, "--model", tiny_ckpt, "--ref", "thor")
    assert code == 0, se
    assert "most confident windows" in so and "top 50%" in so
    code, so, se = run("eval", path, "--model", tiny_ckpt, "--ref", "bogus")
    assert code == 2


def _windows(bpm, conf=None, flags=None):
    from resp_sep.rate import RateWindows

    bpm = np.asarray(bpm, float)
    k = np.arange(bpm.size, dtype=float)
    return RateWindows(60 * k, 60 * k + 60, bpm, np.zeros(bpm.size, int), np.ones(bpm.size),
                       np.array(["ok"] * bpm.size))


def test_confidence_curve_ranks_windows_by_confidence():
    """MAE of the most confident 25/50/75/100 % of windows pooled over recordings; flagged windows apart."""
    from resp_sep.evaluate import RecordResult, confidence_curve

    ref = _windows([15, 15, 15, 15])
    a = RecordResult("a", "ecg", refs={"thor": ref}, methods={"respsep": _windows([15, 16, 19, np.nan])},
                     confidence={"respsep": np.array([0.9, 0.5, 0.1, 0.0])},
                     flags={"respsep": np.array(["ok", "ok", "low_confidence", "no_source"])})
    b = RecordResult("b", "ecg", refs={"thor": ref}, methods={"respsep": _windows([17, 15, 15, 15])},
                     confidence={"respsep": np.array([0.2, 0.8, 0.7, 0.6])},
                     flags={"respsep": np.array(["disagree", "ok", "ok", "ok"])})
    c = confidence_curve([a, b], "thor")
    # scored windows by confidence: 0.9 (err 0), 0.8 (0), 0.7 (0), 0.6 (0), 0.5 (1), 0.2 (2), 0.1 (4)
    assert c["n_windows"] == 7
    assert [p["n_windows"] for p in c["curve"]] == [2, 4, 6, 7]
    assert [p["mae_bpm"] for p in c["curve"]] == pytest.approx([0, 0, 3 / 6, 7 / 7])
    assert c["flagged"] == {"n_windows": 2, "mae_bpm": pytest.approx(3.0)}
    assert c["ok"]["n_windows"] == 5 and c["ok"]["mae_bpm"] == pytest.approx(0.2)
    # without a confidence (a --pred-dir prediction) there is no curve
    a.confidence.clear()
    b.confidence.clear()
    assert confidence_curve([a, b], "thor") is None


def test_eval_cli_pred_dir(tmp_path, sim_rec):
    sim, path = sim_rec
    d = tmp_path / "preds"
    d.mkdir()
    t = np.arange(int(300 * 25)) / 25
    write_csv(d / "sim.resp.csv", ["time_s", "resp"], [t, np.interp(t, np.arange(len(sim.resp)) / sim.fs, sim.resp)])
    code, so, se = run("eval", path, "--pred-dir", str(d), "--ref", "thor", "--per-record")
    assert code == 0, se
    assert "respsep" in so and "sim.edf" in so


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present (real recordings are not shipped)")
def test_eval_marsh_annotations_and_baselines(tiny_ckpt):
    """On a real MARSH record: thorax belt, nasal thermistor and the hand-marked thorax breaths agree."""
    res = evaluate_recording(str(SHARED / "marsh-edf" / "marsh-3723.edf"), signal="ecg", model=tiny_ckpt,
                             refs=("thor", "nasal"), baselines=True, ref_annotations="end-inspiration thorax")
    rows = summarise([res])
    agree = next(r for r in rows if r["ref"] == "thor" and r["method"] == "reference:nasal")
    assert agree["mae_bpm"] < 1.5
    ann = next(r for r in rows if r["ref"] == "annotations:end-inspiration thorax" and r["method"] == "ecg_rsa_sarkar2015")
    assert ann["n_windows"] >= 10 and ann["mae_bpm"] < 6


def test_demo_runs_with_a_given_model(tmp_path, tiny_ckpt):
    code, so, se = run("demo", "--out-dir", str(tmp_path / "d"), "--minutes", "3", "--model", tiny_ckpt, "--json")
    assert code == 0, se
    rep = json.loads(so)
    names = [r["method"] for r in rep["scores"]]
    assert names[:4] == ["respsep", "fusion", "fusion+separator", "separator"] and "ecg_rsa_sarkar2015" in names
    assert "ppg_amplitude" in names and rep["inputs"] == "ecg+ppg"
    assert Path(rep["plot"]).stat().st_size > 10_000
    assert Path(rep["resp_csv"]).read_text().startswith("time_s,resp\n")


def test_per_record_tables_are_never_cut(monkeypatch):
    """--per-record on a narrow terminal: every method name and number is printed whole (split tables)."""
    import io

    from rich.console import Console

    import resp_sep.cli as cli

    methods = ["respsep", "fusion+separator", "ecg_rsa_charlton2016", "ecg_rsa_vangent2019", "ppg_amplitude",
               "reference:nasal"] + [f"source_number_{k}" for k in range(8)]
    recs = [f"marsh-{k:04d}.edf" for k in range(21)]
    rows = [{"ref": "thor", "method": m, "per_record": {r: 1.0 + 0.01 * i + j for j, r in enumerate(recs)}}
            for i, m in enumerate(methods)]
    buf = io.StringIO()
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(cli, "out", Console(file=buf, width=100, highlight=False, soft_wrap=True))
    cli._print_per_record(rows, "thor")
    text = buf.getvalue()
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= 100
    for m in methods:
        assert text.count(m) == text.count("part ")  # once per part
    for j, r in enumerate(recs):
        assert r in text and f"{1.0 + j:.2f}" in text
