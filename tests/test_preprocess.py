"""Preprocessing: resampling, segmenting, scaling, segment quality control, load_signal."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from resp_sep.preprocess import (
    MODEL_FS,
    SEGMENT_LEN,
    fill_gaps,
    load_signal,
    minmax_scale,
    n_segments,
    quality_filter,
    resample,
    segment,
)

RATES = [256, 250, 125, 100, 500, 1000, 199.7, 360, 128]


def _tone_fit(y: np.ndarray, f0: float, fs: float, edge: int) -> tuple[float, float]:
    """(amplitude of the f0 component by least squares, FFT peak frequency) away from the edges."""
    yy = y[edge:len(y) - edge]
    t = np.arange(edge, len(y) - edge) / fs
    basis = np.c_[np.sin(2 * np.pi * f0 * t), np.cos(2 * np.pi * f0 * t)]
    coef, *_ = np.linalg.lstsq(basis, yy, rcond=None)
    spec = np.abs(np.fft.rfft(yy * np.hanning(yy.size)))
    return float(np.hypot(*coef)), float(np.fft.rfftfreq(yy.size, 1 / fs)[spec.argmax()])


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("f0", [0.25, 7.3, 31.0])  # breathing, QRS energy, upper ECG band
def test_resample_keeps_tone(fs, f0):
    if f0 > 0.4 * min(fs, MODEL_FS):
        pytest.skip("tone above the common pass band")
    n = round(60 * fs)
    x = 1.7 * np.sin(2 * np.pi * f0 * np.arange(n) / fs + 0.4)
    y = resample(x, fs, MODEL_FS)
    assert y.dtype == np.float64
    assert abs(len(y) - n * MODEL_FS / fs) <= 1
    amp, peak = _tone_fit(y, f0, MODEL_FS, edge=400)
    bin_hz = MODEL_FS / (len(y) - 800)
    assert abs(peak - f0) <= bin_hz, (peak, f0)
    assert amp == pytest.approx(1.7, rel=0.01)
    # and the waveform itself, not just its spectrum: the resampled tone is the tone at 200 Hz
    t = np.arange(len(y)) / MODEL_FS
    ref = 1.7 * np.sin(2 * np.pi * f0 * t + 0.4)
    assert np.max(np.abs(y[400:-400] - ref[400:-400])) < 0.02 * 1.7


def test_resample_removes_aliases():
    """A tone above the output Nyquist (100 Hz) is filtered, not folded into the band."""
    fs = 1000
    x = np.sin(2 * np.pi * 130 * np.arange(60 * fs) / fs)  # would alias to 70 Hz
    y = resample(x, fs)
    assert np.std(y[400:-400]) < 0.01


def test_resample_identity_and_errors():
    x = np.arange(10.0)
    y = resample(x, 200.0)
    np.testing.assert_array_equal(x, y)
    assert y is not x
    with pytest.raises(ValueError):
        resample(x, 0)
    with pytest.raises(ValueError):
        resample(x, 250, -1)


def test_resample_edges_without_transient():
    """A constant offset stays constant to the ends (edge padding, no zero-padding dip).

    The polyphase branches differ slightly in DC gain, a ripple of ~4e-4 of the offset; a
    zero-padded filter would instead drop the first and last samples towards half the offset.
    """
    y = resample(np.full(2500, 3.0), 250)
    assert len(y) == 2000
    np.testing.assert_allclose(y, 3.0, rtol=2e-3)
    x = np.linspace(0, 10, 5000)  # a ramp at 500 Hz ("line" padding continues it)
    ramp = resample(x, 500)
    ref = np.interp(np.arange(len(ramp)) / MODEL_FS, np.arange(5000) / 500, x)
    np.testing.assert_allclose(ramp, ref, atol=0.02)


# -------------------------------------------------------------------------------------- segments


@pytest.mark.parametrize("n, length, hop, expected", [
    (30_000, SEGMENT_LEN, None, 2),
    (30_000, SEGMENT_LEN, SEGMENT_LEN // 2, 3),
    (SEGMENT_LEN, SEGMENT_LEN, None, 1),
    (SEGMENT_LEN - 1, SEGMENT_LEN, None, 0),
    (0, SEGMENT_LEN, None, 0),
    (1000, 100, 30, 31),
    (1000, 100, 100, 10),
    (1001, 100, 7, 129),
    (1000, 100, 1000, 1),
])
def test_segment_shapes(n, length, hop, expected):
    x = np.arange(n, dtype=np.float64)
    s = segment(x, length, hop)
    assert s.shape == (expected, length)
    assert n_segments(n, length, hop or length) == expected
    step = hop or length
    for k in range(expected):
        np.testing.assert_array_equal(s[k], x[k * step:k * step + length])
    if expected:
        # the last segment ends inside the signal, and one more would not fit
        assert (expected - 1) * step + length <= n < expected * step + length
        assert not s.flags.writeable  # a view, not a copy


def test_segment_default_and_errors():
    x = np.zeros(3 * SEGMENT_LEN + 5, dtype=np.float32)
    s = segment(x)
    assert s.shape == (3, SEGMENT_LEN) and s.dtype == np.float32
    with pytest.raises(ValueError):
        segment(x, 100, 0)


def test_minmax_scale():
    rng = np.random.default_rng(0)
    seg = np.vstack([rng.normal(5, 3, 1000), np.full(1000, 7.0), np.zeros(1000), np.linspace(-1, 1, 1000)])
    out = minmax_scale(seg)
    assert out.dtype == np.float32 and out.shape == seg.shape
    assert not np.any(np.isnan(out))
    np.testing.assert_allclose(out[1], 0.5)
    np.testing.assert_allclose(out[2], 0.5)
    for row in (out[0], out[3]):
        assert row.min() == 0.0 and row.max() == pytest.approx(1.0)
    np.testing.assert_allclose(out[3], np.linspace(0, 1, 1000), atol=1e-6)
    # any leading shape
    assert minmax_scale(np.ones((2, 3, 50))).shape == (2, 3, 50)


# ------------------------------------------------------------------------------------ quality control


def spike_train(bpm: float, n: int = SEGMENT_LEN, fs: float = MODEL_FS, noise: float = 0.001,
                seed: int = 0) -> np.ndarray:
    """ECG-like beats: a narrow R wave, a small S wave and a T wave, at a fixed rate."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    x = np.zeros(n)
    for b in np.arange(0.3, n / fs, 60.0 / bpm):
        x += (np.exp(-0.5 * ((t - b) / 0.012) ** 2) - 0.15 * np.exp(-0.5 * ((t - b - 0.03) / 0.01) ** 2)
              + 0.2 * np.exp(-0.5 * ((t - b - min(0.25, 15 / bpm)) / 0.05) ** 2))
    return x + noise * rng.standard_normal(n)


@pytest.fixture(scope="module")
def ecg70() -> np.ndarray:
    """62 s of NeuroKit2's simulated ECG at 70 bpm and 200 Hz, cut to one segment."""
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nk.ecg_simulate(duration=62, sampling_rate=200, heart_rate=70, random_state=1)[:SEGMENT_LEN]


def test_quality_filter_reasons(ecg70):
    nan = spike_train(70).copy()
    nan[5000:5010] = np.nan
    clipped = np.clip(ecg70, None, np.quantile(ecg70, 0.95))  # 5% of the samples on the rail
    segs = np.vstack([ecg70, nan, np.full(SEGMENT_LEN, 0.3), clipped, spike_train(20), spike_train(250),
                      spike_train(70, seed=3)])
    rep = quality_filter(segs)
    assert rep.reasons == {"nan": 1, "flat": 1, "clipped": 1, "heart_rate": 2}
    assert rep.keep.tolist() == [True, False, False, False, False, False, True]
    assert rep.n_total == 7 and rep.n_kept == 2
    assert rep.heart_rate[0] == pytest.approx(70, abs=3)
    assert rep.heart_rate[6] == pytest.approx(70, abs=3)
    assert rep.heart_rate[4] == pytest.approx(20, abs=2)
    # 250 bpm must be measured as such, not folded to 125 bpm by a 300-ms refractory period
    assert rep.heart_rate[5] == pytest.approx(250, abs=10)
    assert np.isnan(rep.heart_rate[1:4]).all()  # not computed for segments already dropped
    assert rep.summary() == "2/7 segments kept (dropped: nan 1, flat 1, clipped 1, heart_rate 2)"


@pytest.mark.parametrize("bpm, kept", [(30, False), (45, True), (100, True), (170, True), (200, False)])
def test_quality_filter_hr_range(bpm, kept):
    rep = quality_filter(spike_train(bpm)[None])
    assert rep.heart_rate[0] == pytest.approx(bpm, rel=0.03)
    assert bool(rep.keep[0]) is kept


def test_quality_filter_without_hr_check():
    segs = np.vstack([spike_train(20), spike_train(250), np.full(SEGMENT_LEN, np.nan)])
    rep = quality_filter(segs, check_heart_rate=False)
    assert rep.keep.tolist() == [True, True, False]
    assert rep.reasons == {"nan": 1, "flat": 0, "clipped": 0, "heart_rate": 0}
    assert rep.summary() == "2/3 segments kept (dropped: nan 1)"


def test_quality_filter_ppg():
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ppg = nk.ppg_simulate(duration=62, sampling_rate=200, heart_rate=75, random_state=2)[:SEGMENT_LEN]
    rep = quality_filter(ppg[None], kind="ppg")
    assert rep.keep.tolist() == [True]
    assert rep.heart_rate[0] == pytest.approx(75, abs=4)


def test_quality_filter_empty():
    rep = quality_filter(np.empty((0, SEGMENT_LEN)))
    assert rep.n_total == 0 and rep.summary() == "0/0 segments kept"


def test_fill_gaps():
    x = np.array([np.nan, 1.0, np.nan, 3.0, np.nan, np.nan])
    np.testing.assert_allclose(fill_gaps(x), [1, 1, 2, 3, 3, 3])


# ------------------------------------------------------------------------------------- load_signal


def test_load_signal_marsh(shared_data):
    path = shared_data / "marsh-edf" / "marsh-0005.edf"
    ecg = load_signal(path, "ecg")
    assert ecg.fs == MODEL_FS and ecg.fs_orig == 250 and ecg.label == "ECG" and ecg.role == "ecg"
    assert abs(len(ecg.x) - 906 * 200) <= 1 and ecg.duration_s == pytest.approx(906, abs=0.01)
    assert np.all(np.isfinite(ecg.x)) and ecg.note == ""
    ppg = load_signal(path, "ppg")
    assert ppg.fs == MODEL_FS and ppg.fs_orig == 500 and abs(len(ppg.x) - len(ecg.x)) <= 1
    raw = load_signal(path, "thor", fs_out=None)
    assert raw.fs == 250 and len(raw.x) == 226_500
    # real ECG at 200 Hz passes the quality filter nearly everywhere at a resting heart rate
    rep = quality_filter(segment(ecg.x))
    assert rep.n_total == 14 and rep.n_kept >= 12, rep.summary()
    assert np.nanmedian(rep.heart_rate) == pytest.approx(70, abs=25)


def test_load_signal_marsh_250hz_pleth(shared_data):
    ppg = load_signal(shared_data / "marsh-edf" / "marsh-0018.edf", "ppg")
    assert ppg.fs_orig == 250 and ppg.fs == MODEL_FS and abs(len(ppg.x) - 897 * 200) <= 1


def test_load_signal_cinc_override(shared_data):
    sig = load_signal(shared_data / "cinc2015-wfdb" / "v100s.hea", "ecg", {"ecg": "V"})
    assert sig.label == "V" and sig.fs == MODEL_FS and len(sig.x) == 60_000
    assert np.all(np.isfinite(sig.x))  # NaN gaps are interpolated
