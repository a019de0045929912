"""Respiratory sources: synthetic RSA and pulse modulation, errors, gaps, the registry, MARSH."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import fftconvolve

from resp_sep.sources import (
    ECG_RSP_METHODS,
    FAMILIES,
    GRID_FS,
    SOURCES,
    SignalContext,
    all_heuristics,
    compute_source,
    source_families,
    source_names,
)
from resp_sep.errors import InputError
from resp_sep.rate import breathing_rate, paired_abs_error

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MARSH = SHARED / "marsh-edf"
needs_marsh = pytest.mark.skipif(not (MARSH / "marsh-0005.edf").exists(),
                                 reason="../shared/data/marsh-edf not available (fresh clone)")

RESP_BPM = 15.0
OUT_FS = GRID_FS
ECG_NAMES = {f"ecg_rsa_{m}" for m in ECG_RSP_METHODS} | {"ecg_r_amplitude", "ecg_rs_amplitude", "ecg_qrs_area",
                                                         "ecg_baseline"}
PPG_NAMES = {"ppg_baseline", "ppg_amplitude", "ppg_rate"}


def all_baselines(x, fs, kind):
    """Every heuristic source as name -> (waveform, fs)."""
    if kind not in ("ecg", "ppg"):
        raise ValueError(kind)
    return {n: (o.wave, o.fs) for n, o in all_heuristics(x, fs, kind).items()}


def one(name, x, fs):
    o = compute_source(name, SignalContext(x, fs, SOURCES[name].kind))
    return o.wave, o.fs


def beat_times(duration_s: float, hr: float = 66.0, rsa: float = 6.0, resp_bpm: float = RESP_BPM) -> np.ndarray:
    """Beat times (s) of a heart rate modulated by breathing: hr + rsa * sin(2 pi f_resp t) beats/min."""
    fs = 1000.0
    t = np.arange(int(duration_s * fs)) / fs
    rate = hr + rsa * np.sin(2 * np.pi * resp_bpm / 60.0 * t)
    phase = np.cumsum(rate / 60.0) / fs
    return t[np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1]


def pulse_train(beats_s: np.ndarray, amplitude: np.ndarray, template: np.ndarray, n: int, fs: float) -> np.ndarray:
    """Sum of ``template`` placed at each beat (sample of its start) with the given amplitudes."""
    impulses = np.zeros(n)
    idx = np.round(beats_s * fs).astype(int)
    keep = idx < n
    np.add.at(impulses, idx[keep], amplitude[keep])
    return fftconvolve(impulses, template)[:n]


def synthetic_ecg(duration_s: float, fs: float = 250.0, seed: int = 0) -> np.ndarray:
    """ECG with respiratory sinus arrhythmia and R-amplitude modulation at RESP_BPM, noise and wander."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * fs)
    beats = beat_times(duration_s)
    k = np.arange(int(0.6 * fs)) / fs
    qrs = np.exp(-0.5 * ((k - 0.05) / 0.008) ** 2) - 0.15 * np.exp(-0.5 * ((k - 0.07) / 0.01) ** 2)
    twave = 0.3 * np.exp(-0.5 * ((k - 0.3) / 0.04) ** 2)
    r_amp = 1.0 + 0.15 * np.sin(2 * np.pi * RESP_BPM / 60.0 * beats + 0.5)
    ecg = pulse_train(beats, r_amp, qrs, n, fs) + pulse_train(beats, np.ones(beats.size), twave, n, fs)
    t = np.arange(n) / fs
    return ecg + 0.02 * rng.standard_normal(n) + 0.1 * np.sin(2 * np.pi * 0.03 * t)


def synthetic_ppg(duration_s: float, fs: float = 100.0, seed: int = 0) -> np.ndarray:
    """PPG whose pulse amplitude, pulse rate and baseline are modulated at RESP_BPM."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * fs)
    beats = beat_times(duration_s) + 0.2  # pulse transit
    k = np.arange(int(0.8 * fs)) / fs
    pulse = np.where(k < 0.12, np.sin(np.pi / 2 * k / 0.12) ** 2, np.exp(-(k - 0.12) / 0.2))
    amp = 1.0 + 0.2 * np.sin(2 * np.pi * RESP_BPM / 60.0 * beats)
    t = np.arange(n) / fs
    baseline = 0.3 * np.sin(2 * np.pi * RESP_BPM / 60.0 * t + 1.0)
    return pulse_train(beats, amp, pulse, n, fs) + baseline + 0.01 * rng.standard_normal(n)


def _rate_ok(wave: np.ndarray, fs: float, tol: float = 1.0) -> None:
    r = breathing_rate(wave, fs)
    assert r.scored.mean() >= 0.8, list(r.flag)
    assert abs(np.nanmedian(r.bpm) - RESP_BPM) < tol, np.round(r.bpm, 2)


def test_ecg_baselines_recover_rsa_rate():
    ecg = synthetic_ecg(300)
    out = all_baselines(ecg, 250.0, "ecg")
    assert set(out) == ECG_NAMES
    for name, (wave, fs) in out.items():
        assert fs == OUT_FS and wave.shape == (int(300 * OUT_FS),), name
        _rate_ok(wave, fs)


def test_ecg_baselines_polarity_and_rate_independent():
    ecg = synthetic_ecg(300, seed=1)
    wave, fs = one("ecg_rsa_sarkar2015", -ecg, 250.0)  # inverted leads happen
    _rate_ok(wave, fs)
    from scipy.signal import resample_poly

    ecg_1k = resample_poly(ecg, 4, 1)  # a 1000-Hz recording is analysed at 500 Hz
    wave, fs = one("ecg_r_amplitude", ecg_1k, 1000.0)
    assert wave.shape == (int(300 * OUT_FS),)
    _rate_ok(wave, fs)


def test_ppg_baselines_recover_rate():
    ppg = synthetic_ppg(300, fs=500.0)
    out = all_baselines(ppg, 500.0, "ppg")
    assert set(out) == PPG_NAMES
    for name, (wave, fs) in out.items():
        assert fs == OUT_FS and wave.shape == (int(300 * OUT_FS),), name
        _rate_ok(wave, fs)


@pytest.mark.parametrize("kind", ["ecg", "ppg"])
def test_no_beats_is_a_one_line_input_error(kind):
    fs = 250.0
    t = np.arange(int(120 * fs)) / fs
    for bad in (np.zeros(t.size), np.full(t.size, np.nan), np.sin(2 * np.pi * 0.2 * t)):
        with pytest.raises(InputError) as info:
            all_baselines(bad, fs, kind)
        assert "\n" not in str(info.value) and str(info.value)
    with pytest.raises(InputError, match="no ECG R-peaks"):
        all_baselines(np.sin(2 * np.pi * 0.2 * t), fs, "ecg")  # breathing given as ECG
    with pytest.raises(InputError):
        all_baselines(np.zeros(100), fs, kind)  # too short


def test_kind_must_be_ecg_or_ppg():
    with pytest.raises(ValueError):
        all_baselines(np.zeros(1000), 250.0, "eeg")


def test_missing_samples_stay_missing():
    fs = 250.0
    ecg = synthetic_ecg(300, fs, seed=2)
    ecg[int(120 * fs): int(190 * fs)] = np.nan  # a 70-s lead-off
    wave, fs_out = one("ecg_rsa_sarkar2015", ecg, fs)
    t = np.arange(wave.size) / fs_out
    assert np.isnan(wave[(t > 121) & (t < 189)]).all()
    assert np.isfinite(wave[t < 119]).all()
    r = breathing_rate(wave, fs_out)
    assert r.flag[2] == "nan" and np.isnan(r.bpm[2])
    np.testing.assert_allclose(r.bpm[[0, 4]], RESP_BPM, atol=1.0)
    wave, _ = one("ppg_baseline", np.where(np.isfinite(ecg), synthetic_ppg(300, fs), np.nan), fs)
    assert np.isnan(wave[(t > 121) & (t < 189)]).all()


def test_one_hour_in_seconds():
    ecg = synthetic_ecg(3600, 256.0, seed=3)
    t0 = time.perf_counter()
    out = all_baselines(ecg, 256.0, "ecg")
    ecg_s = time.perf_counter() - t0
    ppg = synthetic_ppg(3600, 100.0, seed=3)
    t0 = time.perf_counter()
    one("ppg_amplitude", ppg, 100.0)
    ppg_s = time.perf_counter() - t0
    print(f"1 h: ECG suite {ecg_s:.1f} s, PPG pulse amplitude {ppg_s:.1f} s")
    assert ecg_s < 15 and ppg_s < 10
    r = breathing_rate(*out["ecg_rsa_sarkar2015"])
    assert abs(np.nanmedian(r.bpm) - RESP_BPM) < 1.0


@needs_marsh
def test_marsh_sarkar2015_against_thorax():
    from resp_sep.io import read_recording

    rec = read_recording(MARSH / "marsh-0005.edf")
    thor = rec.channel("Thorax IP")
    ref = breathing_rate(thor.read(), thor.fs, kind="reference")
    ecg = rec.channel("ECG")
    out = all_baselines(ecg.read(), ecg.fs, "ecg")
    maes = {name: paired_abs_error(breathing_rate(w, fs), ref) for name, (w, fs) in out.items()}
    for name, err in maes.items():
        print(f"marsh-0005 {name}: MAE {err.mean():.2f} breaths/min over {err.size} windows")
    err = maes["ecg_rsa_sarkar2015"]
    assert err.size >= 12
    assert err.mean() < 6.0


def test_registry_one_signature_and_the_fusion_set():
    assert set(source_names("ecg", heuristics_only=True)) == ECG_NAMES
    assert set(source_names("ppg", heuristics_only=True)) == PPG_NAMES
    assert {"separator_ecg", "separator_ppg"} <= set(SOURCES)
    fusion = source_names(fusion_only=True)
    assert "ecg_rsa_sarkar2015" in fusion and "ecg_rsa_soni2019" not in fusion  # RSA votes once
    assert all(SOURCES[n].kind in ("ecg", "ppg") and SOURCES[n].description for n in SOURCES)
    # one vote per modulation family in fusion: the three QRS readings are one family, each family is
    # on one channel
    fam = source_families(SOURCES)
    assert fam["ecg_r_amplitude"] == fam["ecg_rs_amplitude"] == fam["ecg_qrs_area"] != fam["ecg_baseline"]
    assert all(f in FAMILIES and SOURCES[n].kind in f for n, f in fam.items())
    with pytest.raises(ValueError, match="needs a PPG"):
        compute_source("ppg_rate", SignalContext(np.zeros(3000), 100.0, "ecg"))


def test_beats_are_detected_once_per_channel(monkeypatch):
    import resp_sep.beats as B

    calls = []
    real = B.ecg_beats
    monkeypatch.setattr(B, "ecg_beats", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = all_heuristics(synthetic_ecg(120), 250.0, "ecg")
    assert len(out) == len(ECG_NAMES) and len(calls) == 1
