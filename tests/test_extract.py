"""Extraction: stitching, whole files, the batch CLI (bad files, skipping, shards, JSON, EDF output)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_tiny_checkpoint

from resp_sep.api import extract_file
from resp_sep.outputs import RATE_COLUMNS
from resp_sep.separate import Separator, overlap_add, segment_starts
from resp_sep.simulate import simulate, write_simulation


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", resp_encoder=2)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    d = tmp_path_factory.mktemp("recs")
    paths = [write_simulation(simulate(duration_s=150, fs=250, seed=s), d / f"night{s}.edf") for s in (1, 2)]
    (d / "broken.edf").write_bytes(b"0       " + b"garbage" * 40)
    return d, [str(p) for p in paths]


def run(*args, timeout=300):
    r = subprocess.run([sys.executable, "-m", "resp_sep", *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("n", [12_288, 12_289, 20_000, 12_288 * 3 + 17, 100_003])
@pytest.mark.parametrize("hop", [12_288, 6_144, 4_000, 777])
def test_identity_overlap_add_returns_input(n, hop):
    x = np.random.default_rng(n + hop).standard_normal(n)
    y = overlap_add(x, lambda s: s.copy(), hop=hop, batch_size=5)
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-12)
    st = segment_starts(n, 12_288, hop)
    assert st[0] == 0 and st[-1] == n - 12_288 and np.all(np.diff(st) <= hop)


def test_overlap_add_blends_without_seams():
    """A per-segment constant offset (like per-segment scaling) is cross-faded, not stepped."""
    x = np.zeros(60_000)
    calls = iter(range(1000))
    y = overlap_add(x, lambda s: np.stack([np.full(s.shape[1], float(next(calls))) for _ in s]), hop=6_144)
    assert np.max(np.abs(np.diff(y))) < 2.0 / 6_144 * 2  # at most a linear ramp between neighbours


def test_too_short_recording_is_refused(tiny_ckpt):
    from resp_sep.errors import InputError

    sep = Separator.from_checkpoint(tiny_ckpt)
    with pytest.raises(InputError, match="too short"):
        sep.extract(np.random.randn(200 * 30), 200.0, path="x.edf")


def test_extract_file_csv(tmp_path, tiny_ckpt, recordings):
    _, paths = recordings
    out = tmp_path / "resp.csv"
    res = extract_file(paths[0], method="separator", model=tiny_ckpt)
    res.save(str(out), rates=str(tmp_path / "r.csv"))
    info = res.info
    lines = out.read_text().splitlines()
    assert lines[0] == "time_s,resp"
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    assert data.shape == (150 * 25, 2)  # 25 Hz default, whole recording covered
    np.testing.assert_allclose(np.diff(data[:, 0]), 0.04, atol=1e-6)
    assert np.isfinite(data[:, 1]).all()
    assert info["signal"] == "ecg" and info["resp_encoder"] == "2" and info["sources"] == {"separator_ecg": 1.0}
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == ",".join(RATE_COLUMNS)
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_single_and_skip_and_overwrite(tmp_path, tiny_ckpt, recordings):
    _, paths = recordings
    out = tmp_path / "a.csv"
    code, so, se = run("extract", paths[0], "--out", str(out), "--model", tiny_ckpt, "--out-rate", "10")
    assert code == 0, se
    assert len(out.read_text().splitlines()) == 1 + 1500
    mtime = out.stat().st_mtime_ns
    code, so, se = run("extract", paths[0], "--out", str(out), "--model", tiny_ckpt)
    assert code == 0 and "skipped" in so and out.stat().st_mtime_ns == mtime
    code, so, se = run("extract", paths[0], "--out", str(out), "--model", tiny_ckpt, "--overwrite")
    assert code == 0 and out.stat().st_mtime_ns != mtime
    assert len(out.read_text().splitlines()) == 1 + 150 * 25


def test_cli_batch_with_a_corrupt_file(tmp_path, tiny_ckpt, recordings):
    d, paths = recordings
    outd = tmp_path / "out"
    code, so, se = run("extract", str(d), "--out-dir", str(outd), "--model", tiny_ckpt, "--json")
    assert code == 4, se
    rep = json.loads(so)
    st = {r["file"].split("/")[-1]: r["status"] for r in rep["results"]}
    assert st == {"broken.edf": "failed", "night1.edf": "ok", "night2.edf": "ok"}
    assert sorted(p.name for p in outd.iterdir()) == ["night1.resp.csv", "night2.resp.csv", "respsep-summary.tsv"]
    rows = [ln.split("\t") for ln in (outd / "respsep-summary.tsv").read_text().splitlines()]
    assert rows[0][:4] == ["id", "path", "status", "exit_code"] and len(rows) == 4
    assert {r[0]: (r[2], r[3]) for r in rows[1:]} == {"broken": ("failed", "3"), "night1": ("ok", "0"),
                                                      "night2": ("ok", "0")}
    # human mode: one line per file and a summary; the failure is one line on stderr
    code, so, se = run("extract", str(d), "--out-dir", str(outd), "--model", tiny_ckpt)
    assert code == 4
    assert "summary" in so and so.count("skipped") >= 2
    assert "broken.edf" in se and "Traceback" not in se


def test_cli_shards_partition_the_files(tmp_path, tiny_ckpt, recordings):
    d, _ = recordings
    seen = []
    for k in (1, 2):
        code, so, _ = run("extract", str(d / "night*.edf"), "--out-dir", str(tmp_path / f"s{k}"),
                          "--model", tiny_ckpt, "--shard", f"{k}/2", "--json")
        assert code == 0
        seen += [r["file"] for r in json.loads(so)["results"]]
    assert sorted(s.split("/")[-1] for s in seen) == ["night1.edf", "night2.edf"]
    code, _, se = run("extract", str(d), "--out-dir", str(tmp_path), "--shard", "3/2")
    assert code == 2 and "shard" in se


def test_cli_edf_output_reads_back(tmp_path, tiny_ckpt, recordings):
    from resp_sep.io import read_recording

    _, paths = recordings
    out = tmp_path / "resp.edf"
    code, _, se = run("extract", paths[1], "--out", str(out), "--model", tiny_ckpt, "--format", "edf")
    assert code == 0, se
    rec = read_recording(out)
    assert rec.channels[0].fs == 25 and rec.channels[0].n_samples == 150 * 25


def test_cli_errors(tmp_path, tiny_ckpt, recordings):
    d, paths = recordings
    code, _, se = run("extract", str(d / "broken.edf"), "--out", str(tmp_path / "x.csv"), "--model", tiny_ckpt)
    assert code == 3 and len(se.strip().splitlines()) == 1 and not (tmp_path / "x.csv").exists()
    code, _, se = run("extract", paths[0], "--out", str(tmp_path / "x.csv"), "--model", str(tmp_path / "nope.pt"))
    assert code == 4 or code == 5
    assert "nope.pt" in se and "Traceback" not in se
    short = write_simulation(simulate(duration_s=40, fs=250, seed=3), tmp_path / "short.edf")
    code, _, se = run("extract", str(short), "--out", str(tmp_path / "s.csv"), "--model", tiny_ckpt,
                      "--method", "separator")
    assert code == 3 and "too short" in se
    code, so, se = run("extract", str(short), "--out", str(tmp_path / "s.csv"), "--model", tiny_ckpt)
    assert code == 3 and "too short" in se and not (tmp_path / "s.csv").exists()
    # between one rate window and one separator segment the heuristics answer, and say what was left out
    mid = write_simulation(simulate(duration_s=61, fs=250, seed=3), tmp_path / "mid.edf")
    code, so, se = run("extract", str(mid), "--out", str(tmp_path / "m.csv"), "--model", tiny_ckpt)
    assert code == 0 and "separator_ecg (" in so and "too short" in so
    code, _, se = run("extract", paths[0], "--out", str(tmp_path / "x.csv"), "--model", tiny_ckpt,
                      "--channel", "ecg=NOPE")
    assert code == 3 and "NOPE" in se


def test_extract_file_default_is_fusion_of_ecg_and_ppg(tmp_path, recordings):
    """No options: every source of both inputs, rates with confidence and the contributing sources."""
    import csv

    _, paths = recordings
    out, rates = tmp_path / "resp.csv", tmp_path / "rates.csv"
    res = extract_file(paths[0])
    res.save(str(out), rates=str(rates))
    info = res.info
    assert info["method"] == "fusion" and info["signal"] == "ecg+ppg"
    assert {"ecg_rsa_sarkar2015", "ecg_qrs_area", "ppg_amplitude", "ppg_rate"} <= set(info["sources"])
    assert not any(n.startswith("separator") for n in info["sources"]) and info["model"] is None
    assert abs(sum(info["sources"].values()) - 1) < 0.005  # rounded to 3 decimals
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    assert data.shape == (150 * 25, 2) and np.isfinite(data[:, 1]).all()
    rows = list(csv.DictReader(rates.open()))
    assert len(rows) == 2 and all(0 <= float(r["confidence"]) <= 1 for r in rows)
    assert all(r["flag"] in ("ok", "low_confidence", "disagree") for r in rows if r["breaths_per_min"] != "")
    assert all(":" in r["sources"] for r in rows)


def test_cli_method_and_signal_choices(tmp_path, recordings):
    _, paths = recordings
    code, so, se = run("extract", paths[0], "--out", str(tmp_path / "a.csv"), "--method", "ppg_amplitude", "--json")
    assert code == 0, se
    rep = json.loads(so)["results"][0]
    assert rep["signal"] == "ppg" and rep["sources"] == {"ppg_amplitude": 1.0}
    code, _, se = run("extract", paths[0], "--out", str(tmp_path / "b.csv"), "--method", "nope")
    assert code == 2 and "unknown --method 'nope'" in se and not (tmp_path / "b.csv").exists()
    code, _, se = run("extract", paths[0], "--out", str(tmp_path / "c.csv"), "--signal", "xyz")
    assert code == 2 and "--signal" in se
    code, so, se = run("extract", paths[0], "--out", str(tmp_path / "d.csv"), "--signal", "ecg",
                       "--method", "ecg_rsa_sarkar2015,ecg_r_amplitude", "--json")
    assert code == 0, se
    assert set(json.loads(so)["results"][0]["sources"]) == {"ecg_rsa_sarkar2015", "ecg_r_amplitude"}


def test_separators_join_the_fusion_when_asked(tmp_path, tiny_ckpt, recordings):
    """--model adds the separators to the default fusion; 'fusion,NAME' adds a named source."""
    _, paths = recordings
    info = extract_file(paths[0], model=tiny_ckpt).info
    assert {"separator_ecg", "separator_ppg", "ecg_rsa_sarkar2015"} <= set(info["sources"])
    assert tiny_ckpt in info["model"]  # the given model serves the ECG, the shipped one the PPG
    info = extract_file(paths[0], method="fusion,separator_ppg").info
    assert "separator_ppg" in info["sources"] and "separator_ecg" not in info["sources"]
    assert "ecg_rsa_sarkar2015" in info["sources"]


def test_default_fusion_does_not_load_torch(tmp_path, recordings):
    """The default (heuristic sources, no model given) never imports torch: start-up and memory stay small."""
    _, paths = recordings
    code = ("import sys; from resp_sep.cli import main; "
            f"rc = main(['extract', {paths[0]!r}, '--out', {str(tmp_path / 'x.csv')!r}, '-q']); "
            "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x.csv").exists()
