"""The Python API (resp_sep.extract / extract_file): DataFrames, the CLI's numbers, epochs, breaths, EDF+ annotations, MNE."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from conftest import run_cli_subprocess

import resp_sep
from resp_sep.errors import InputError, UsageError
from resp_sep.outputs import BREATH_COLUMNS, RATE_COLUMNS
from resp_sep.simulate import simulate
from resp_sep.writers import write_edf

FS = 256


@pytest.fixture(scope="module")
def sim():
    return simulate(duration_s=330, fs=FS, seed=11)


@pytest.fixture(scope="module")
def night(sim, tmp_path_factory):
    """The simulation's ECG and PPG as an EDF with labels a PSG uses (EKG, Pleth)."""
    p = tmp_path_factory.mktemp("api") / "night.edf"
    write_edf(p, [{"label": "EKG", "fs": FS, "unit": "mV", "data": sim.ecg},
                  {"label": "Pleth", "fs": FS, "unit": "a.u.", "data": sim.ppg}])
    return p


@pytest.fixture(scope="module")
def arrays_30(sim):
    return resp_sep.extract(sim.ecg, sim.ppg, ecg_fs=FS, ppg_fs=FS, window_s=30)


def _rates_csv(path) -> list[dict]:
    return list(csv.DictReader(open(path)))


def test_extract_on_arrays_returns_dataframes(arrays_30, sim):
    import pandas as pd

    res = arrays_30
    assert isinstance(res, resp_sep.Extraction)
    w, r, b = res.waveform, res.rates, res.breaths
    assert all(isinstance(x, pd.DataFrame) for x in (w, r, b))
    assert list(w.columns) == ["time_s", "resp"] and len(w) == 330 * 25
    np.testing.assert_allclose(np.diff(w.time_s), 0.04)
    assert list(r.columns) == list(RATE_COLUMNS) and list(b.columns) == list(BREATH_COLUMNS)
    assert res.info["signal"] == "ecg+ppg" and res.info["channels"] == {"ecg": "ECG", "ppg": "PPG"}
    # the breaths/min are right: the simulation's true respiration, scored the same way
    truth = resp_sep.breathing_rate(sim.resp, sim.fs, window_s=30)
    ok = np.isfinite(truth.bpm) & r.breaths_per_min.notna().to_numpy()
    assert ok.sum() >= 8 and np.mean(np.abs(r.breaths_per_min.to_numpy()[ok] - truth.bpm[ok])) < 1.5


def test_thirty_second_epochs_start_at_zero_and_cover_the_recording(arrays_30):
    r = arrays_30.rates
    assert r.start_s.tolist() == [30.0 * k for k in range(11)]  # 330 s: 11 whole epochs
    assert (r.end_s - r.start_s == 30).all()


def test_epochs_without_a_rate_have_a_row_flag_and_zero_confidence(sim):
    """A 70-s stretch without ECG and PPG: its epochs keep their rows, with the reason and confidence 0."""
    ecg, ppg = sim.ecg.copy(), sim.ppg.copy()
    ecg[120 * FS:190 * FS] = np.nan
    ppg[120 * FS:190 * FS] = np.nan
    r = resp_sep.extract(ecg, ppg, ecg_fs=FS, ppg_fs=FS, window_s=30).rates
    assert len(r) == 11 and r.start_s.tolist()[4] == 120.0
    none = r.breaths_per_min.isna()
    assert none[4] and none[5]
    assert (r.confidence[none] == 0).all()
    assert set(r.flag[none]) <= {"too_few_breaths", "poor_quality", "flat", "nan"}
    assert set(r.flag[~none]) <= {"ok", "low_confidence", "disagree"}


def test_breaths_agree_with_the_rates(arrays_30, sim):
    """Breath onsets per scored epoch are within 30 % of what the epoch's rate implies (or one breath)."""
    res = arrays_30
    b, r = res.breaths, res.rates
    known = b.end_s.notna()
    assert known.mean() > 0.9 and np.isnan(b.end_s.iloc[-1])  # the last breath's end is past the recording
    assert (b.end_s[known] > b.onset_s[known]).all()
    np.testing.assert_allclose(b.duration_s[known], (b.end_s - b.onset_s)[known])
    assert (b.onset_s.diff().dropna() > 0).all() and b.amplitude.notna().all()
    assert b.confidence.between(0, 1).all()
    for _, row in r[r.breaths_per_min.notna()].iterrows():
        n = ((b.onset_s >= row.start_s) & (b.onset_s < row.end_s)).sum()
        expect = row.breaths_per_min * (row.end_s - row.start_s) / 60
        assert abs(n - expect) <= max(0.3 * expect, 1.0), (row.start_s, n, expect)
        # a breath carries the confidence of its epoch
        inside = (b.onset_s >= row.start_s) & (b.onset_s < row.end_s)
        assert np.allclose(b.confidence[inside], row.confidence)
    total = r.breaths_per_min.mean() * 330 / 60
    assert abs(len(b) - total) <= 0.3 * total
    # and they are the simulation's breaths: most true onsets have a detected one within 1 s
    true = sim.breath_onsets_s[(sim.breath_onsets_s > 5) & (sim.breath_onsets_s < 325)]
    near = np.min(np.abs(true[:, None] - b.onset_s.to_numpy()[None, :]), axis=1) < 1.0
    assert near.mean() > 0.9


def test_api_on_arrays_gives_the_cli_rates(night, sim, tmp_path):
    """The same samples through the API (float arrays) and the CLI (the EDF, 16-bit): <= 0.05 breaths/min per window."""
    for window in (60, 30):
        rates, breaths = tmp_path / f"rates{window}.csv", tmp_path / f"breaths{window}.csv"
        code, _, err = run_cli_subprocess(["extract", night, "--out", tmp_path / f"r{window}.csv", "--rates", rates,
                                           "--breaths", breaths, "--window", window, "-q"], timeout=300)
        assert code == 0, err
        cli = _rates_csv(rates)
        assert [float(c["start_s"]) for c in cli] == [float(window * k) for k in range(330 // window)]
        onsets = np.array([float(b["onset_s"]) for b in csv.DictReader(open(breaths))])
        for c in cli:  # the breaths file agrees with the rates file
            if c["breaths_per_min"]:
                n = np.sum((onsets >= float(c["start_s"])) & (onsets < float(c["end_s"])))
                expect = float(c["breaths_per_min"]) * window / 60
                assert abs(n - expect) <= max(0.3 * expect, 1.0), (c["start_s"], n, expect)
        api = resp_sep.extract(sim.ecg, sim.ppg, ecg_fs=FS, ppg_fs=FS, window_s=window).rates
        assert len(cli) == len(api) == 330 // window
        for c, (_, a) in zip(cli, api.iterrows()):
            assert float(c["start_s"]) == a.start_s
            assert (c["breaths_per_min"] == "") == math.isnan(a.breaths_per_min)
            if c["breaths_per_min"]:
                assert abs(float(c["breaths_per_min"]) - a.breaths_per_min) <= 0.05
    # extract_file on the EDF is the CLI's own call: the same numbers to the CSV's precision
    f = resp_sep.extract_file(night, window_s=30).rates
    for c, (_, a) in zip(cli, f.iterrows()):
        if c["breaths_per_min"]:
            assert abs(float(c["breaths_per_min"]) - a.breaths_per_min) <= 0.0005
        assert c["flag"] == a.flag and abs(float(c["confidence"]) - a.confidence) <= 0.0005


def test_extract_validates_its_arguments(sim):
    with pytest.raises(UsageError, match="ecg_fs is required"):
        resp_sep.extract(sim.ecg)
    with pytest.raises(UsageError, match="window"):
        resp_sep.extract(sim.ecg, ecg_fs=FS, window_s=5)
    with pytest.raises(UsageError, match="unknown --method"):
        resp_sep.extract(sim.ecg, ecg_fs=FS, method="nope")
    with pytest.raises(UsageError, match="unknown setting"):
        resp_sep.extract(sim.ecg, ecg_fs=FS, hop=3)
    with pytest.raises(InputError, match="too short"):
        resp_sep.extract(sim.ecg[: 30 * FS], ecg_fs=FS)


def test_ppg_alone_and_a_dict_of_signals(sim):
    r = resp_sep.extract(ppg=sim.ppg, ppg_fs=FS)
    assert r.info["signal"] == "ppg" and all(n.startswith("ppg_") for n in r.info["sources"])
    d = resp_sep.extract({"EKG": (sim.ecg, FS), "Thorax": (sim.thor, FS)})
    assert d.info["channels"] == {"ecg": "EKG"}


def test_save_writes_what_the_cli_writes(arrays_30, tmp_path):
    res = arrays_30
    files = res.save(tmp_path / "r.csv", rates=tmp_path / "rates.csv", breaths=tmp_path / "b.csv")
    assert set(files) == {"out", "rates", "breaths"}
    assert (tmp_path / "r.csv").read_text().startswith("time_s,resp\n")
    rows = _rates_csv(tmp_path / "rates.csv")
    assert [float(x["start_s"]) for x in rows] == res.rates.start_s.tolist()
    b = list(csv.DictReader(open(tmp_path / "b.csv")))
    assert len(b) == len(res.breaths) and list(b[0]) == list(BREATH_COLUMNS)
    with pytest.raises(UsageError):
        res.save(tmp_path / "x.csv", rates=tmp_path / "x.csv")  # two outputs, one file
    assert not list(tmp_path.glob(".*tmp*"))


def test_gaps_are_empty_fields_and_edf_annotations(sim, tmp_path):
    """NaN in the respiration: empty CSV fields (never a made-up number) and an EDF+ gap annotation."""
    pyedflib = pytest.importorskip("pyedflib")
    res = resp_sep.extract(sim.ecg, sim.ppg, ecg_fs=FS, ppg_fs=FS, window_s=30)
    res.respiration.wave[1000:1500] = np.nan  # 100-150 s: as if no source were valid
    res.save(tmp_path / "r.csv")
    lines = (tmp_path / "r.csv").read_text().splitlines()[1:]
    empty = [i for i, ln in enumerate(lines) if ln.endswith(",")]
    assert "nan" not in "".join(lines)
    # every 25-Hz sample between two 10-Hz samples one of which is NaN: 99.92 s (between 99.9 and
    # 100.0) to 149.96 s (between 149.9 and 150.0); 150.0 s is a valid sample again
    assert empty == list(range(2498, 3750))
    res.save(tmp_path / "r.edf", breaths=tmp_path / "b.csv")
    f = pyedflib.EdfReader(str(tmp_path / "r.edf"))
    try:
        onset, dur, text = f.readAnnotations()
        resp = f.readSignal(0)
    finally:
        f.close()
    text = np.asarray(text)
    gaps = np.flatnonzero(text == "respsep no respiration")
    assert gaps.size == 1 and onset[gaps[0]] == pytest.approx(100.0) and dur[gaps[0]] == pytest.approx(50.0)
    breaths = onset[text == "breath"]
    b = list(csv.DictReader(open(tmp_path / "b.csv")))
    assert breaths.size == len(b) > 50
    np.testing.assert_allclose(np.sort(breaths), [float(x["onset_s"]) for x in b], atol=1e-3)
    assert np.all(resp[100 * 25:150 * 25] == pytest.approx(0, abs=1e-3))  # EDF has no NaN: 0, annotated


def test_edf_output_flags_windows_to_check(tmp_path, sim):
    pyedflib = pytest.importorskip("pyedflib")
    res = resp_sep.extract(sim.ecg, sim.ppg, ecg_fs=FS, ppg_fs=FS, window_s=30)
    # mark two adjacent epochs and a third one as the fusion would: one annotation per run
    rows = res.rate_rows
    for k, f in ((2, "low_confidence"), (3, "low_confidence"), (6, "disagree")):
        rows[k]["flag"] = f
    res.save(tmp_path / "r.edf")
    f = pyedflib.EdfReader(str(tmp_path / "r.edf"))
    try:
        onset, dur, text = f.readAnnotations()
    finally:
        f.close()
    got = sorted((round(o), round(d), t) for o, d, t in zip(onset, dur, text) if t != "breath")
    assert got == [(60, 60, "respsep low confidence"), (180, 30, "respsep sources disagree")]


def test_mne_reads_the_edf_annotations(tmp_path, arrays_30):
    mne = pytest.importorskip("mne", reason="MNE is optional (not installed)")
    arrays_30.save(tmp_path / "r.edf", breaths=tmp_path / "b.csv")
    raw = mne.io.read_raw_edf(tmp_path / "r.edf", verbose="error")
    n = sum(d == "breath" for d in raw.annotations.description)
    assert n == len(arrays_30.breaths) > 50


class _FakeInfo(dict):
    pass


class _FakeRaw:
    """The part of mne.io.BaseRaw respsep uses (ch_names, info['sfreq'], get_data(picks=))."""

    def __init__(self, data: dict, fs: float):
        self.ch_names = list(data)
        self._x = np.vstack([data[k] for k in self.ch_names])
        self.info = _FakeInfo(sfreq=fs, chs=[{"ch_name": k, "unit": 107} for k in self.ch_names], meas_date=None)
        self.asked: list = []

    def get_data(self, picks=None):
        self.asked.append(list(picks))
        return self._x[[self.ch_names.index(p) for p in picks]]


def test_recording_from_an_mne_like_raw_reads_only_the_cardiac_channels(sim):
    from resp_sep.api import recording_from_mne

    raw = _FakeRaw({"EEG C3": sim.thor, "EKG": sim.ecg * 1e-3, "Pleth": sim.ppg}, FS)
    rec = recording_from_mne(raw)
    assert rec.labels == ["EKG", "Pleth"] and raw.asked == [["EKG", "Pleth"]]
    assert rec.channel("EKG").unit == "V"
    res = resp_sep.extract(resp_sep.api.recording_from_mne(raw))
    ref = resp_sep.extract(sim.ecg, sim.ppg, ecg_fs=FS, ppg_fs=FS)
    a, b = res.rates.breaths_per_min.to_numpy(), ref.rates.breaths_per_min.to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], atol=0.05)  # ECG in V instead of mV
    with pytest.raises(InputError, match="none of these channels"):
        recording_from_mne(raw, channel={"ecg": "ECG1|ECG2"})
    assert recording_from_mne(raw, channel={"ecg": "ECG1|EKG"}).labels[0] == "EKG"


def test_extract_accepts_an_mne_raw(sim):
    mne = pytest.importorskip("mne", reason="MNE is optional (not installed)")
    info = mne.create_info(["EKG", "Pleth", "C3"], FS, ch_types=["ecg", "misc", "eeg"])
    raw = mne.io.RawArray(np.vstack([sim.ecg * 1e-3, sim.ppg, sim.thor * 1e-6]), info, verbose="error")
    res = resp_sep.extract(raw, window_s=30)
    assert res.info["channels"] == {"ecg": "EKG", "ppg": "Pleth"}
    ref = resp_sep.extract(sim.ecg, sim.ppg, ecg_fs=FS, ppg_fs=FS, window_s=30).rates.breaths_per_min
    np.testing.assert_allclose(res.rates.breaths_per_min, ref, atol=0.05)
    with pytest.raises(UsageError):
        resp_sep.extract(raw, ecg_fs=FS)


def test_public_names_are_listed():
    for name in ("extract", "extract_file", "extract_batch", "Extraction", "ExtractOptions", "OutputOptions",
                 "read_sample_list", "read_recording", "breathing_rate"):
        assert name in resp_sep.__all__ and getattr(resp_sep, name) is not None


def test_api_on_arrays_gives_the_cli_rates_on_a_marsh_night(shared_data, tmp_path):
    """A real PSG: its ECG and PPG samples handed to the API as arrays give the CLI's rates on the file."""
    from resp_sep.channels import detect_roles
    from resp_sep.io import read_recording

    path = shared_data / "marsh-edf" / "marsh-0005.edf"
    rec = read_recording(path)
    roles = detect_roles(rec.labels)
    ecg, ppg = rec.channel(roles["ecg"].label), rec.channel(roles["ppg"].label)
    api = resp_sep.extract(ecg.read(), ppg.read(), ecg_fs=ecg.fs, ppg_fs=ppg.fs, window_s=30).rates
    code, _, err = run_cli_subprocess(["extract", path, "--out", tmp_path / "r.csv", "--rates", tmp_path / "rates.csv",
                                       "--window", "30", "-q"], timeout=300)
    assert code == 0, err
    cli = _rates_csv(tmp_path / "rates.csv")
    assert len(cli) == len(api) > 20
    for c, (_, a) in zip(cli, api.iterrows()):
        assert float(c["start_s"]) == a.start_s and (c["breaths_per_min"] == "") == math.isnan(a.breaths_per_min)
        if c["breaths_per_min"]:
            assert abs(float(c["breaths_per_min"]) - a.breaths_per_min) <= 0.05
