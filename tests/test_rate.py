"""Breathing rate per window: known rates, pauses, artefacts, events vs waveform, real MARSH data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from resp_sep.errors import InputError
from resp_sep.rate import (
    FLAGS,
    RateWindows,
    breathing_rate,
    paired_abs_error,
    rate_from_breath_times,
    window_grid,
)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MARSH = SHARED / "marsh-edf"
needs_marsh = pytest.mark.skipif(not (MARSH / "marsh-0005.edf").exists(),
                                 reason="../shared/data/marsh-edf not available (fresh clone)")


def breathing(bpm: float, duration_s: float, fs: float, seed: int = 0, noise: float = 0.1) -> np.ndarray:
    """Asymmetric breathing (fundamental + 2nd harmonic) with noise and a slow baseline drift."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * fs)) / fs
    f = bpm / 60.0
    x = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t + 1.0)
    return x + noise * rng.standard_normal(t.size) + 0.5 * np.sin(2 * np.pi * t / 170.0)


def cycles(durations_s: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One raised-cosine breath per duration: (signal, onset times s, peak times s)."""
    parts, onsets, peaks, t0 = [], [], [], 0.0
    for d in durations_s:
        n = round(d * fs)
        parts.append(-np.cos(2 * np.pi * np.arange(n) / n))  # trough at the start, peak half-way
        onsets.append(t0)
        peaks.append(t0 + n / fs / 2)
        t0 += n / fs
    return np.concatenate(parts), np.array(onsets), np.array(peaks)


def test_window_grid_full_windows_only():
    s, e = window_grid(906.0, 60.0)
    assert s.size == 15 and e[-1] == 900.0
    s, e = window_grid(120.0, 60.0, 30.0, start_s=10.0)
    np.testing.assert_allclose(s, [10.0, 40.0, 70.0])
    np.testing.assert_allclose(e - s, 60.0)
    assert window_grid(59.9, 60.0)[0].size == 0
    with pytest.raises(ValueError):
        window_grid(100.0, 0.0)


@pytest.mark.parametrize("bpm", [8, 12, 15, 20, 30])
def test_known_rate_every_window(bpm):
    x = breathing(bpm, 300, fs=50, seed=bpm)
    for sign in (1, -1):  # the sign of a respiration signal is arbitrary
        r = breathing_rate(sign * x, 50)
        assert len(r) == 5
        assert list(r.flag) == ["ok"] * 5
        np.testing.assert_allclose(r.bpm, bpm, atol=0.5)
        assert (r.quality > 0.7).all()


@pytest.mark.parametrize("bpm", [10, 20])
def test_known_rate_realistic_shape(bpm):
    nk = pytest.importorskip("neurokit2")
    # breathmetrics varies each breath around the nominal rate, so the windows scatter a little
    x = nk.rsp_simulate(duration=300, sampling_rate=50, respiratory_rate=bpm, noise=0.05, random_state=bpm)
    r = breathing_rate(x, 50)
    assert r.scored.all()
    assert abs(np.median(r.bpm) - bpm) < 1.0


def test_any_sampling_rate_and_start_time():
    r = breathing_rate(breathing(15, 180, fs=256), 256, start_s=1000.0)
    np.testing.assert_allclose(r.start_s, [1000.0, 1060.0, 1120.0])
    np.testing.assert_allclose(r.bpm, 15, atol=0.5)
    assert r.breath_times_s.min() >= 1000.0
    r = breathing_rate(breathing(15, 180, fs=4), 4)  # below the internal rate: upsampled
    np.testing.assert_allclose(r.bpm, 15, atol=0.5)


def test_pause_and_flat_windows_are_flagged():
    fs = 25
    x = breathing(15, 360, fs)
    t = np.arange(x.size) / fs
    x[(t >= 60) & (t < 120)] = 0.3  # sensor off: constant
    x[(t >= 180) & (t < 240)] = 0.3 + 0.01 * np.random.default_rng(1).standard_normal(60 * fs)  # apnoea
    x[(t >= 300) & (t < 360)] = np.nan
    r = breathing_rate(x, fs)
    assert r.flag[1] == "flat" and r.flag[3] == "too_few_breaths" and r.flag[5] == "nan"
    assert np.isnan(r.bpm[[1, 3, 5]]).all() and (r.n_breaths[[1, 3, 5]] == 0).all()
    # a window half apnoea is not averaged into a normal rate
    y = breathing(15, 120, fs)
    y[30 * fs: 90 * fs] = 0.3 + 0.01 * np.random.default_rng(2).standard_normal(60 * fs)
    r = breathing_rate(y, fs)
    assert not r.scored.any() and set(r.flag) == {"too_few_breaths"}


def test_artefacts_flagged_or_within_tolerance():
    fs, bpm = 100, 15
    rng = np.random.default_rng(3)
    x = breathing(bpm, 600, fs, seed=3)
    t = np.arange(x.size) / fs
    spikes = rng.choice(x.size, 30, replace=False)  # 3 per window on average, 30x the breath swing
    x[spikes] += rng.choice([-1, 1], 30) * 30
    x[(t >= 70) & (t < 90)] = x.max()  # clipped at the rail for 20 s
    x[(t >= 130) & (t < 145)] = np.nan  # dropout
    x[(t >= 200) & (t < 215)] = 0.0  # dropout to zero
    x[(t >= 300) & (t < 360)] = np.nan  # a whole window missing
    x[(t >= 500) & (t < 502)] = 1000 * np.sin(np.linspace(0, 20, 2 * fs))  # a burst of huge artefact
    r = breathing_rate(x, fs)
    assert set(r.flag) <= set(FLAGS)
    assert r.flag[5] == "nan"
    ok = r.scored
    np.testing.assert_allclose(r.bpm[ok], bpm, atol=0.5)
    # windows with only spikes must still be scored: spikes are bridged, not counted as breaths
    assert ok[[0, 4, 6, 9]].all()
    assert ok.sum() >= 8
    assert all(r.flag[i] == "partial" for i in (1, 2, 3, 8) if ok[i])


def test_events_agree_with_waveform():
    fs = 50
    rng = np.random.default_rng(7)
    # breath-to-breath variability: durations 3-6 s, then a slower stretch at 7-9 s
    durations = np.concatenate([rng.uniform(3, 6, 80), rng.uniform(7, 9, 30)])
    x, onsets, peaks = cycles(durations, fs)
    x = x + 0.05 * rng.standard_normal(x.size)
    wave = breathing_rate(x, fs)
    for events in (onsets, peaks):
        ev = rate_from_breath_times(events, x.size / fs)
        assert np.array_equal(ev.start_s, wave.start_s)
        err = paired_abs_error(wave, ev)
        assert err.size >= len(wave) - 1
        assert err.max() < 0.5, err
    # and both equal the definition computed by hand on window 0
    d = np.diff(onsets[onsets < 60.0])
    d = d[(d >= 0.6 * np.median(d)) & (d <= 1.6 * np.median(d))]
    assert rate_from_breath_times(onsets, x.size / fs).bpm[0] == pytest.approx(60 / d.mean())


def test_events_edge_cases():
    r = rate_from_breath_times([], 300.0)
    assert len(r) == 5 and not r.scored.any() and set(r.flag) == {"too_few_breaths"}
    # unsorted, duplicated events at 12/min
    t = np.arange(0, 300, 5.0)
    r = rate_from_breath_times(np.concatenate([t[::-1], t[:10]]), 300.0)
    np.testing.assert_allclose(r.bpm, 12.0)
    assert isinstance(r, RateWindows) and r.kind == "events"


def test_degenerate_inputs():
    r = breathing_rate(np.full(25 * 120, np.nan), 25)
    assert list(r.flag) == ["nan", "nan"]
    r = breathing_rate(np.zeros(25 * 120), 25)
    assert not r.scored.any()
    r = breathing_rate(np.zeros(10), 25)  # shorter than a window: no windows, no error
    assert len(r) == 0
    with pytest.raises(InputError):
        breathing_rate(np.zeros(100), 0.0)
    with pytest.raises(InputError):
        breathing_rate(np.zeros(0), 25)
    with pytest.raises(ValueError):
        breathing_rate(np.zeros(100), 25, kind="belt")


def test_eight_hours_in_seconds():
    fs = 100
    x = np.tile(breathing(14, 600, fs), 48)  # 8 h at 100 Hz, 2.9 M samples
    t0 = time.perf_counter()
    r = breathing_rate(x, fs)
    elapsed = time.perf_counter() - t0
    assert len(r) == 480 and r.scored.mean() > 0.95
    assert elapsed < 20, f"8 h took {elapsed:.1f} s"


@needs_marsh
def test_marsh_thorax_waveform_agrees_with_hand_marked_breaths():
    from resp_sep.io import read_recording

    rec = read_recording(MARSH / "marsh-0005.edf")
    thor = rec.channel("Thorax IP")
    wave = breathing_rate(thor.read(), thor.fs, kind="reference")
    times = [a.onset_s for a in rec.annotations if a.label == "end-inspiration thorax"]
    ann = rate_from_breath_times(times, thor.duration_s)
    err = paired_abs_error(wave, ann)
    print(f"marsh-0005 Thorax IP vs annotations: median {np.median(err):.2f}, max {err.max():.2f} "
          f"breaths/min over {err.size} windows")
    assert err.size >= 13
    assert np.median(err) < 1.0


@needs_marsh
def test_marsh_all_subjects_thorax_vs_annotations():
    """Pooled over the 21 subjects: the impedance waveform and the hand-marked breaths agree.

    This catches detector settings that count the cardiac oscillation of impedance channels as
    breaths (marsh-0048) or that double-count notched breaths (marsh-4909).
    """
    from resp_sep.io import read_recording

    errs = []
    for path in sorted(MARSH.glob("*.edf")):
        rec = read_recording(path)
        thor = rec.channel("Thorax IP")
        times = [a.onset_s for a in rec.annotations if a.label == "end-inspiration thorax"]
        errs.append(paired_abs_error(breathing_rate(thor.read(), thor.fs, kind="reference"),
                                     rate_from_breath_times(times, thor.duration_s)))
    err = np.concatenate(errs)
    print(f"MARSH Thorax IP vs annotations: MAE {err.mean():.2f} breaths/min over {err.size} windows")
    assert err.size >= 250
    assert err.mean() < 0.6 and np.mean(err < 2) > 0.9


# ------------------------------------------------------------------ bounded temporaries, same numbers


def _fill_runs_oracle(n, first, last):
    """The grid-length cumulative count the chunked _fill_runs replaced."""
    d = np.zeros(n + 1, np.int64)
    np.add.at(d, first, 1)
    np.add.at(d, last, -1)
    return np.cumsum(d[:n]) > 0


@pytest.mark.parametrize("seed", range(6))
def test_fill_runs_equals_the_cumulative_count(seed, monkeypatch):
    import resp_sep.rate as R

    rng = np.random.default_rng(seed)
    monkeypatch.setattr(R, "FILL_CHUNK", int(rng.integers(3, 50)))  # block edges fall everywhere
    n = int(rng.integers(1, 400))
    k = int(rng.integers(0, 30))
    first = rng.integers(0, n + 1, k)
    last = np.minimum(first + rng.integers(0, 40, k), n)  # overlapping, empty and end-reaching runs
    assert np.array_equal(R._fill_runs(n, first, last), _fill_runs_oracle(n, first, last))


@pytest.mark.parametrize("seed", range(4))
def test_spike_bridging_equals_interp_over_every_good_sample(seed):
    """_remove_spikes bridges from each run's two neighbours: the numbers np.interp gives from all good samples."""
    import resp_sep.rate as R

    rng = np.random.default_rng(seed)
    fs = 25.0
    t = np.arange(int(600 * fs)) / fs
    y = np.sin(2 * np.pi * 0.25 * t) + 0.05 * rng.standard_normal(t.size)
    idx = rng.choice(t.size, 40, replace=False)
    y[idx] += rng.choice([-1, 1], idx.size) * rng.uniform(5, 20, idx.size)  # spikes, some near the ends
    y[:3] += 30.0
    y[-2:] -= 30.0
    y[5000:5080] += 15.0 * (-1.0) ** np.arange(80)  # an artefact burst longer than SPIKE_MAX_S
    missing = np.zeros(t.size, bool)
    missing[9000:9100] = True
    got, burst = R._remove_spikes(y, fs, missing)
    # the oracle: the same spikes, bridged by np.interp over every good sample
    from scipy.ndimage import median_filter

    swing = R._median_block_ptp(y, fs, missing, R.SWING_BLOCK_S)
    resid = y - median_filter(y, size=max(3, round(R.SPIKE_WIN_S * fs) | 1), mode="nearest")
    spikes = R._widen((np.abs(resid) > R.SPIKE_K * swing) & ~missing, round(R.BAD_MARGIN_S * fs))
    want = y.copy()
    good = np.flatnonzero(~spikes)
    want[spikes] = np.interp(np.flatnonzero(spikes), good, y[good])
    assert spikes.any() and burst.any()
    assert np.array_equal(got, want)
