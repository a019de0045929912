"""Quality and fusion: copies, noise, polarity, lags, disagreement, gaps, windows."""

from __future__ import annotations

import numpy as np

from resp_sep.fusion import FLAGS, fuse, robust_scale, window_starts
from resp_sep.quality import window_spectra
from resp_sep.rate import breathing_rate

FS = 10.0


def breathing(duration_s: float, bpm: float = 15.0, seed: int = 0, wander: float = 0.05) -> np.ndarray:
    """A breathing-like waveform: a slowly wandering rate, a rounded shape, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * FS)) / FS
    f = bpm / 60.0 * (1 + wander * np.sin(2 * np.pi * t / 170.0))
    ph = 2 * np.pi * np.cumsum(f) / FS
    return np.sin(ph) + 0.25 * np.sin(2 * ph + 0.4) + 0.05 * rng.standard_normal(t.size)


def noise(duration_s: float, seed: int = 1) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(duration_s * FS))
    return sosfiltfilt(butter(2, [0.1, 0.7], "band", fs=FS, output="sos"), x)


def test_quality_separates_breathing_from_noise():
    starts = window_starts(3000, 300, 150)
    q_b = window_spectra(breathing(300), FS, starts, 300)
    q_n = window_spectra(noise(300), FS, starts, 300)
    assert q_b.concentration.min() > 0.75
    # a 30-s window holds few frequency bins, so noise can look peaked by chance: low on average
    assert q_n.concentration.mean() < 0.45 and q_n.concentration.max() < 0.7
    np.testing.assert_allclose(q_b.peak_hz * 60, 15.0, atol=1.5)


def test_fusing_copies_returns_the_source():
    x = breathing(600) * 3.0 + 0.2
    r = fuse({"a": x, "b": x.copy(), "c": x.copy()}, FS, shape=False, level=False)
    np.testing.assert_allclose(r.wave, np.clip((x - np.median(x)) / robust_scale(x), -5, 5), atol=1e-9)
    np.testing.assert_allclose(r.weights, 1 / 3, atol=1e-12)
    assert (r.flag == "ok").all() and (r.confidence > 0.5).all()
    # the default also cleans the waveform around the breathing rate: the same breaths, the same rates
    rs = fuse({"a": x, "b": x.copy(), "c": x.copy()}, FS)
    assert np.corrcoef(rs.wave, x)[0, 1] > 0.95  # the harmonic that shapes each breath is gone
    np.testing.assert_allclose(breathing_rate(rs.wave, FS).bpm, breathing_rate(x, FS).bpm, atol=0.3)


def test_pure_noise_gets_almost_no_weight():
    x = breathing(600, seed=2)
    r = fuse({"breath": x, "noise": 3 * noise(600, seed=3)}, FS)
    k = r.names.index("noise")
    assert r.quality[:, k].mean() < 0.5 < r.quality[:, 1 - k].min()
    assert r.weights[:, k].mean() < 0.05 and r.weights[:, k].max() < 0.3
    rate = breathing_rate(r.wave, FS)
    np.testing.assert_allclose(np.nanmedian(rate.bpm), 15.0, atol=0.7)


def test_polarity_flipped_and_delayed_sources_are_aligned():
    x = breathing(600, seed=4)
    flipped = -np.roll(x, 12)  # inverted and 1.2 s late, as an amplitude modulation can be
    r = fuse({"a": x, "b": flipped}, FS)
    kb = r.names.index("b")
    ka = r.names.index("a")
    # relative sign and lag (either may be the anchor); the end windows cannot look beyond the recording
    inner = slice(1, -1)
    assert (r.sign[inner, kb] * r.sign[inner, ka] == -1).all()
    assert np.all(np.abs((r.lag_s[inner, kb] - r.lag_s[inner, ka]) - 1.2) < 0.15)
    # aligned, the two add up instead of cancelling: the fusion is either source (at the anchor's timing)
    best = max(abs(np.corrcoef(r.wave[100:-100], np.roll(x, k)[100:-100])[0, 1]) for k in range(0, 13))
    assert best > 0.95
    assert np.nanstd(r.wave) > 0.8 * np.nanstd(x / robust_scale(x))


def test_two_good_sources_that_disagree_are_flagged_not_averaged_silently():
    a, b = breathing(600, 12.0, seed=5), breathing(600, 24.0, seed=6)
    r = fuse({"a": a, "b": b}, FS)
    assert (r.flag == "disagree").mean() > 0.9
    assert (r.confidence < 0.6).all()
    # with a third source agreeing with one of them, the consensus follows the majority
    r3 = fuse({"a": a, "b": b, "c": breathing(600, 12.0, seed=7)}, FS)
    np.testing.assert_allclose(np.median(r3.consensus_hz) * 60, 12.0, atol=0.7)
    assert r3.weights[:, r3.names.index("b")].mean() < 0.1


def test_a_family_of_sources_gets_one_vote():
    # three readings of one mechanism (e.g. R amplitude, R-S amplitude, QRS area) locked on 12
    # breaths/min, one clearer source of another mechanism at 20: counted per source the three
    # outvote it; one vote per family, the clearer mechanism wins the consensus
    trio = {f"amp{i}": breathing(600, 12.0, seed=10) + 1.0 * noise(600, seed=20 + i) for i in range(3)}
    clear = {"rate": breathing(600, 20.0, seed=11)}
    waves = trio | clear
    per_source = fuse(waves, FS)
    assert per_source.quality[:, 3].mean() > per_source.quality[:, :3].mean() + 0.1  # the premise
    np.testing.assert_allclose(np.median(per_source.consensus_hz) * 60, 12.0, atol=0.7)
    fam = {k: "ecg_amplitude" for k in trio} | {"rate": "ecg_rate"}
    by_family = fuse(waves, FS, families=fam)
    np.testing.assert_allclose(np.median(by_family.consensus_hz) * 60, 20.0, atol=0.7)
    assert by_family.weights[:, 3].mean() > 0.8
    # a family of one, or no families at all, changes nothing
    single = fuse(waves, FS, families={k: k for k in waves})
    np.testing.assert_array_equal(single.wave, per_source.wave)


def test_scale_takes_weight_where_a_source_is_unreliable():
    # two sources at 15 breaths/min; a factor 0 on one in the second half of the recording removes
    # its weight there only (windows wholly inside), factors of 1 change nothing
    waves = {"a": breathing(600, 15.0, seed=1), "b": breathing(600, 15.0, seed=2)}
    plain = fuse(waves, FS)
    f = np.ones(6000)
    f[3000:] = 0.0
    scaled = fuse(waves, FS, scale={"b": f})
    inside = scaled.start_s >= 300
    before = scaled.end_s <= 300
    assert inside.any() and before.any()
    np.testing.assert_array_equal(scaled.weights[inside, 1], 0.0)
    np.testing.assert_allclose(scaled.weights[before], plain.weights[before])
    assert plain.weights[inside, 1].min() > 0.3
    np.testing.assert_array_equal(fuse(waves, FS, scale={"b": np.ones(6000)}).wave, plain.wave)


def test_level_evens_weak_breaths_but_keeps_a_pause():
    x = breathing(900, seed=12)
    t = np.arange(x.size) / FS
    env = np.ones_like(x)
    env[(t >= 300) & (t < 420)] = 0.4    # shallow breaths (or sources partly cancelling)
    env[(t >= 600) & (t < 720)] = 0.02   # a pause: no breathing
    y = x * env + 0.002 * noise(900, seed=13)
    flat = fuse({"a": y}, FS, level=False).wave
    lev = fuse({"a": y}, FS).wave

    def rms(w, a, b):
        return float(np.sqrt(np.nanmean(w[int(a * FS):int(b * FS)] ** 2)))

    # shallow breaths are brought to the typical size...
    assert rms(flat, 330, 390) < 0.5 * rms(flat, 100, 250)
    assert 0.8 < rms(lev, 330, 390) / rms(lev, 100, 250) < 1.25
    # ...but the gain is bounded: the pause stays far below a breath
    assert rms(lev, 630, 690) < 0.15 * rms(lev, 100, 250)
    np.testing.assert_allclose(rms(lev, 100, 250), rms(flat, 100, 250), rtol=0.1)  # typical level kept


def test_gaps_and_windows():
    x = breathing(600, seed=8)
    y = x.copy()
    y[2000:3200] = np.nan  # a 2-min lead-off in one source
    r = fuse({"a": y, "b": x}, FS)
    assert np.isfinite(r.wave).all()  # the other source bridges the gap
    both_gone = fuse({"a": y}, FS)
    assert np.isnan(both_gone.wave[2300:2900]).all() and np.isfinite(both_gone.wave[:1900]).all()
    assert "no_source" in set(both_gone.flag) and set(both_gone.flag) <= set(FLAGS)
    # every sample is covered by some window, the last one ends at the end
    st = window_starts(6001, 300, 150)
    assert st[0] == 0 and st[-1] == 6001 - 300 and np.all(np.diff(st) <= 150)
    short = fuse({"a": x[:150]}, FS)  # shorter than one window: one window
    assert len(short.start_s) == 1 and short.wave.size == 150


def test_polarity_stays_continuous_when_the_anchor_changes():
    """The best source changes halfway and has the opposite polarity: the fusion must not flip with it."""
    x = breathing(900, seed=9)
    half = np.arange(x.size) < 4500
    rng = np.random.default_rng(10)
    a = np.where(half, x, 0) + np.where(half, 0.05, 2.0) * rng.standard_normal(x.size)
    b = -np.where(half, 0, x) + np.where(half, 2.0, 0.05) * rng.standard_normal(x.size)
    r = fuse({"a": a, "b": b}, FS)
    c1 = np.corrcoef(r.wave[:4000], x[:4000])[0, 1]
    c2 = np.corrcoef(r.wave[5000:], x[5000:])[0, 1]
    assert abs(c1) > 0.9 and abs(c2) > 0.9
    assert c1 * c2 > 0, f"sign flipped within the fused waveform ({c1:.2f}, {c2:.2f})"


def _realistic_sources(duration_s: float = 3600.0, seed: int = 11) -> dict[str, np.ndarray]:
    """Eight sources as a night gives them: a wandering rate (so the lag limit changes from window to
    window), delays, inverted polarity, different units, noise-only stretches, lead-off gaps, one
    source at another rhythm."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * FS)
    t = np.arange(n) / FS
    f = (9 + 12 * (0.5 + 0.5 * np.sin(2 * np.pi * t / 1700.0))) / 60.0  # 9-21 breaths/min
    ph = 2 * np.pi * np.cumsum(f) / FS
    x = np.sin(ph) + 0.3 * np.sin(2 * ph + 0.7)
    out = {}
    for k in range(6):
        y = (-1) ** k * np.roll(x, 4 * k) * (1 + 10 * k) + (0.2 + 0.3 * k) * rng.standard_normal(n)
        bad = rng.random(n // 600) < 0.1  # whole minutes replaced by noise
        y = np.where(np.repeat(bad, 600)[:n], 3 * rng.standard_normal(n), y)
        out[f"s{k}"] = y
    out["s1"][5000:8000] = np.nan
    out["s3"][n - 2000:] = np.nan
    out["other"] = np.sin(2 * np.pi * 0.45 * t) + 0.5 * rng.standard_normal(n)
    out["noise"] = noise(duration_s, seed=seed + 1)
    return out


def test_vectorised_windows_equal_the_window_loop(monkeypatch):
    """fuse's block-wise window combination gives the same numbers, bit for bit, as the one-window loop."""
    import resp_sep.fusion as F
    from fusion_oracle import _fuse_windows_loop

    waves = _realistic_sources()
    new = F.fuse(waves, FS)
    monkeypatch.setattr(F, "FUSE_BLOCK", 7)  # block boundaries everywhere
    small = F.fuse(waves, FS)
    monkeypatch.setattr(F, "_fuse_windows", _fuse_windows_loop)
    old = F.fuse(waves, FS)
    unshaped_old = F.fuse(waves, FS, shape=False)
    monkeypatch.undo()
    unshaped_new = F.fuse(waves, FS, shape=False)
    assert len(set(np.round(old.consensus_hz, 3))) > 10 and (old.sign == -1).any() and np.abs(old.lag_s).max() > 0
    for a, b in ((new, old), (small, old), (unshaped_new, unshaped_old)):
        for k in ("wave", "confidence", "sign", "lag_s", "weights"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
        assert (a.flag == b.flag).all()


def test_rate_windows_confidence_and_flags():
    """A rate window's confidence: its analysis windows' confidence x the rate's quality; flagged below the threshold."""
    from resp_sep.fusion import LOW_RATE_CONFIDENCE

    x = breathing(600, seed=9)
    good = fuse({"a": x, "b": breathing(600, seed=10)}, FS)  # two sources that agree
    starts = np.arange(10) * 60.0
    q = np.ones(10)
    scored = np.ones(10, bool)
    conf, flag = good.rate_windows(starts, starts + 60, q, scored)
    assert (conf > LOW_RATE_CONFIDENCE).all() and (flag == "ok").all()
    np.testing.assert_allclose(conf[3], good.window_summary(180, 240)["confidence"])
    # the rate's quality scales it; a window without a rate has confidence 0
    q2 = q.copy()
    q2[4] = 0.3
    scored[7] = False
    conf2, flag2 = good.rate_windows(starts, starts + 60, q2, scored)
    assert conf2[4] == conf[4] * 0.3 and flag2[4] == "low_confidence" and conf2[7] == 0.0
    # two good sources at different rates: half the evidence agrees (0.5); with breaths that count less
    # cleanly than perfect, flagged, and named for the disagreement, where agreeing sources are not
    bad = fuse({"a": x, "b": breathing(600, bpm=24.0, seed=11)}, FS)
    conf3, flag3 = bad.rate_windows(starts, starts + 60, 0.6 * q, np.ones(10, bool))
    assert (conf3 < LOW_RATE_CONFIDENCE).all() and (flag3 == "disagree").all()
    assert (good.rate_windows(starts, starts + 60, 0.6 * q, np.ones(10, bool))[1] == "ok").all()
    # no source at all: no_source; a rate reaching into a gap is judged by the part with sources
    y = x.copy()
    y[2000:3200] = np.nan
    gap = fuse({"a": y}, FS)
    conf4, flag4 = gap.rate_windows(starts, starts + 60, q, np.ones(10, bool))
    assert flag4[4] == "no_source" and flag4[0] == "ok"
    assert flag4[3] in ("ok", "low_confidence") and conf4[3] < conf4[0]
