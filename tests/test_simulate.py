"""Tests of resp_sep.simulate: the ground truth is what the signals really carry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from resp_sep.io import read_recording
from resp_sep.simulate import Simulation, simulate, write_simulation


def _band(x: np.ndarray, fs: float, lo: float = 0.05, hi: float = 0.7) -> np.ndarray:
    """The respiratory band (Hz) of a signal, zero-phase."""
    return sosfiltfilt(butter(2, [lo, hi], btype="band", fs=fs, output="sos"), np.asarray(x, dtype=np.float64))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(300, fs=128, seed=1)


def test_shapes_and_ranges(sim):
    n = 300 * 128
    assert sim.fs == 128.0 and sim.ppg_fs == 128.0 and sim.seed == 1
    for name in ("ecg", "ppg", "resp", "nasal", "thor", "rate_bpm"):
        x = getattr(sim, name)
        assert x.shape == (n,), name
    for name in ("ecg", "ppg", "resp", "nasal", "thor"):
        assert np.all(np.isfinite(getattr(sim, name))), name
    assert abs(float(sim.resp.mean())) < 1e-3
    assert 0.2 < float(sim.resp.std()) < 0.6  # a typical breath is about 1 peak to peak
    rate = sim.rate_bpm[np.isfinite(sim.rate_bpm)]
    assert 5 < rate.min() and rate.max() < 40
    onsets = sim.breath_onsets_s
    assert np.all(np.diff(onsets) > 0) and onsets[0] >= 0 and onsets[-1] < 300
    # 8-25 breaths/min over 5 minutes (pauses excepted)
    assert 30 <= onsets.size <= 130
    # heart rate 55-90 beats/min, a little beyond with RSA
    hr = 60 / np.diff(sim.r_peaks_s)
    assert 45 < hr.min() and hr.max() < 110
    assert sim.duration_s == 300


def test_inhalation_is_rising_after_onsets(sim):
    t = np.arange(sim.resp.size) / sim.fs
    i0 = np.searchsorted(t, sim.breath_onsets_s[1:-1])
    i1 = np.searchsorted(t, sim.breath_onsets_s[1:-1] + 0.8)  # inhalation lasts > 0.8 s
    assert np.all(sim.resp[i1] > sim.resp[i0])


def test_deterministic_by_seed():
    a = simulate(60, fs=100, seed=7)
    b = simulate(60, fs=100, seed=7)
    c = simulate(60, fs=100, seed=8)
    for name in ("ecg", "ppg", "resp", "nasal", "thor", "rate_bpm", "breath_onsets_s", "r_peaks_s"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert not np.array_equal(a.ecg, c.ecg)
    assert not np.array_equal(a.resp, c.resp)


def test_constant_breathing_rate_is_known():
    sim = simulate(120, fs=64, seed=3, breathing="constant", rate_bpm=15)
    first_minute = sim.breath_onsets_s[sim.breath_onsets_s < 60]
    assert abs(first_minute.size - 15) <= 1
    assert np.allclose(np.diff(sim.breath_onsets_s), 4.0)
    assert np.all(sim.rate_bpm == 15)
    # the spectrum of the true respiration peaks at 15 breaths/min = 0.25 Hz
    spec = np.abs(np.fft.rfft(sim.resp))
    f = np.fft.rfftfreq(sim.resp.size, 1 / sim.fs)
    assert abs(f[np.argmax(spec)] - 0.25) < 0.01
    assert sim.pauses_s.shape == (0, 2)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_ecg_baseline_carries_respiration(seed):
    sim = simulate(300, fs=128, seed=seed, artefacts=False)
    assert abs(_corr(_band(sim.ecg, sim.fs), _band(sim.resp, sim.fs))) > 0.5


def test_ppg_baseline_carries_respiration(sim):
    # artefacts are on in this fixture: the modulation must still dominate the band
    assert abs(_corr(_band(sim.ppg, sim.ppg_fs), _band(sim.resp, sim.fs))) > 0.5


def test_rsa_heart_rate_higher_on_inhalation(sim):
    r = sim.r_peaks_s
    hr = 60 / np.diff(r)
    mid = (r[1:] + r[:-1]) / 2
    resp_at = np.interp(mid, np.arange(sim.resp.size) / sim.fs, sim.resp)
    assert _corr(hr, resp_at) > 0.3


def test_ecg_beat_amplitude_modulated():
    sim = simulate(300, fs=256, seed=2, noise=0.0, artefacts=False)
    idx = np.round(sim.r_peaks_s * sim.fs).astype(int)
    idx = idx[(idx > 2) & (idx < sim.ecg.size - 3)]
    # R height above the local baseline (the respiratory wander removed)
    base = _band(sim.ecg, sim.fs, 0.01, 0.7)
    height = np.array([sim.ecg[i - 2: i + 3].max() for i in idx]) - base[idx]
    assert abs(_corr(height, sim.resp[idx])) > 0.5
    assert 0.05 < np.ptp(height) / np.median(height) < 1.0


def test_references_follow_respiration(sim):
    flow = np.gradient(sim.resp.astype(np.float64)) * sim.fs
    assert _corr(sim.nasal, flow) > 0.9
    assert _corr(_band(sim.thor, sim.fs), _band(sim.resp, sim.fs)) > 0.9


def test_pauses_are_flat_and_have_no_rate():
    sim = simulate(3600, fs=16, seed=4, artefacts=False)
    assert sim.pauses_s.shape[0] >= 1
    t = np.arange(sim.resp.size) / sim.fs
    for a, b in sim.pauses_s:
        inside = (t > a + 0.1) & (t < min(b, sim.duration_s) - 0.1)
        assert np.all(np.isnan(sim.rate_bpm[inside]))
        assert np.ptp(sim.resp[inside]) < 1e-6
        assert 10 <= b - a <= 20
        assert not np.any((sim.breath_onsets_s > a) & (sim.breath_onsets_s < b))
    # no NaN outside the pauses
    paused = np.zeros(t.size, bool)
    for a, b in sim.pauses_s:
        paused |= (t >= a) & (t < b)
    assert not np.any(np.isnan(sim.rate_bpm[~paused]))


def test_artefacts_and_mains():
    clean = simulate(120, fs=256, seed=5, artefacts=False)
    art = simulate(120, fs=256, seed=5, artefacts=True)
    assert art.artefacts_s.shape[0] >= 1
    t = np.arange(clean.ecg.size) / clean.fs
    a, b = art.artefacts_s[0]
    inside = (t >= a) & (t <= b)
    assert np.abs(art.ecg - clean.ecg)[inside].max() > 0.3
    assert np.array_equal(art.ecg[t < a - 0.01], clean.ecg[t < a - 0.01])
    assert np.array_equal(art.resp, clean.resp)  # motion never changes the true breathing
    hum = simulate(20, fs=256, seed=5, artefacts=False, mains_hz=50)
    quiet = simulate(20, fs=256, seed=5, artefacts=False)
    spec = np.abs(np.fft.rfft(hum.ecg - quiet.ecg))
    assert np.fft.rfftfreq(hum.ecg.size, 1 / 256)[np.argmax(spec)] == pytest.approx(50, abs=0.1)


def test_ppg_own_rate():
    sim = simulate(30, fs=256, ppg_fs=64, seed=0)
    assert sim.ppg.shape == (30 * 64,) and sim.ppg_fs == 64.0
    assert sim.ecg.shape == (30 * 256,)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="breathing"):
        simulate(10, breathing="irregular")
    with pytest.raises(ValueError, match="duration"):
        simulate(0)


def test_write_simulation_edf_round_trip(tmp_path):
    sim = simulate(60, fs=128, seed=2, ppg_fs=64)
    path = write_simulation(sim, tmp_path / "sim.edf", ppg_label="SpO2 Pleth")
    rec = read_recording(path)
    assert rec.labels == ["ECG", "SpO2 Pleth", "Nasal Pressure", "Thorax", "Resp True"]
    assert [c.fs for c in rec.channels] == [128.0, 64.0, 128.0, 128.0, 128.0]
    assert np.allclose(rec.channel("Resp True").read(), sim.resp, atol=1e-3)
    assert np.allclose(rec.channel("ECG").read(), sim.ecg, atol=1e-3)
    onsets = [a.onset_s for a in rec.annotations if a.label == "inhalation onset"]
    assert np.allclose(onsets, sim.breath_onsets_s, atol=1e-3)


def test_write_simulation_wfdb(tmp_path):
    sim = simulate(30, fs=100, seed=2, artefacts=False)
    hea = write_simulation(sim, tmp_path / "sim01", fmt="wfdb")
    rec = read_recording(hea)
    assert rec.labels == ["ECG", "Pleth", "Nasal Pressure", "Thorax", "Resp True"]
    assert np.allclose(rec.channel("Resp True").read(), sim.resp, atol=1e-3)
    with pytest.raises(ValueError, match="fmt"):
        write_simulation(sim, tmp_path / "x.edf", fmt="csv")


@pytest.mark.slow
def test_eight_hours_fits_in_memory():
    """8 h at 256 Hz: shapes and peak memory (in a fresh process, so the RSS is its own).

    The peak is the child's ``VmHWM``, not ``ru_maxrss``: Python starts the child with vfork, and
    Linux carries the parent's high-water mark into the child's ``ru_maxrss`` at exec, so a
    pytest process grown by earlier tests would be measured instead of the simulation.
    """
    code = (
        "import numpy as np\n"
        "from resp_sep.simulate import simulate\n"
        "s = simulate(8 * 3600, fs=256, seed=0)\n"
        "assert s.ecg.shape == (8 * 3600 * 256,) and s.ppg.shape == s.ecg.shape\n"
        "assert np.isfinite(s.ecg).all() and s.pauses_s.shape[0] >= 5\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print(hwm.split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_mb = int(out.stdout.split()[-1]) / 1024  # VmHWM is in kB
    assert peak_mb < 800, f"peak RSS {peak_mb:.0f} MB"
