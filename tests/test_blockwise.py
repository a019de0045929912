"""The default method's heuristic sources block by block (resp_sep.blockwise) against whole arrays."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from resp_sep import blockwise
from resp_sep.api import extract_with
from resp_sep.outputs import OutputOptions
from resp_sep.pipeline import ExtractOptions, available_inputs, plan, respiration
from resp_sep.sources import SOURCES, SignalContext, compute_sources

#: relative tolerance of the beat-derived sources: the cleaning filters are IIR (module docstring)
RTOL = 1e-10
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    from resp_sep.simulate import simulate, write_simulation

    d = tmp_path_factory.mktemp("blocks")
    # ECG and PPG at 128 Hz (PPG resampled to 100 Hz); ECG at 600 Hz (cleaned at 500 Hz), PPG at 100 Hz
    a = write_simulation(simulate(duration_s=1200, fs=128.0, seed=3), d / "a.edf")
    b = write_simulation(simulate(duration_s=600, fs=600.0, ppg_fs=100.0, seed=4), d / "b.edf")
    return str(a), str(b)


def _whole_and_blocks(path: str, block_s: float):
    from resp_sep.io import read_recording
    from resp_sep.preprocess import load_signal

    rec = read_recording(path)
    avail = available_inputs(rec, None)
    names = plan("fusion", "auto", set(avail), path)
    out = {}
    for kind in ("ecg", "ppg"):
        wanted = [n for n in names if SOURCES[n].kind == kind]
        got = blockwise.heuristic_sources(rec, kind, avail[kind].label, wanted, path, block_s=block_s)
        assert got is not None, f"{kind}: the block path declined"
        sig = load_signal(rec, kind, None, fs_out=None)
        ctx = SignalContext(sig.x, sig.fs, kind, path=path)
        whole, fail = compute_sources(wanted, ctx)
        out[kind] = (got, whole, fail, ctx)
    return out


@pytest.mark.parametrize("block_s", [90.0, 137.3])
def test_blocks_give_the_whole_array_beats_and_sources(nights, block_s):
    for path in nights:
        for kind, (got, whole, fail, ctx) in _whole_and_blocks(path, block_s).items():
            outputs, failures, duration_s, beats = got
            assert list(outputs) == list(whole) and failures == fail
            assert duration_s == pytest.approx(ctx.duration_s)
            if kind == "ecg":
                r = ctx.r_peaks()
                np.testing.assert_array_equal(beats, r)
                # beats near block boundaries are there too (cores start every block_s of the cleaned signal)
                t = r / ctx.fs
                near = np.abs((t + block_s / 2) % block_s - block_s / 2) < 0.5
                assert near.sum() >= 3
            else:
                t, amp = ctx.ppg_beats()
                np.testing.assert_array_equal(beats[0], t)
                np.testing.assert_allclose(beats[1], amp, rtol=RTOL, atol=0)
            for k, w in whole.items():
                b = outputs[k].wave
                assert b.shape == w.wave.shape
                if k.endswith("_baseline") or k == "ppg_rate" or k.startswith("ecg_rsa"):
                    # FIR resampling and beat times only: bit for bit
                    np.testing.assert_array_equal(b, w.wave, err_msg=k)
                else:
                    scale = np.nanmax(np.abs(w.wave))
                    np.testing.assert_allclose(b, w.wave, rtol=0, atol=RTOL * scale, err_msg=k)


def test_extraction_block_wise_equals_whole_array(nights, tmp_path, monkeypatch):
    import resp_sep.preprocess

    path = nights[0]
    opts = ExtractOptions(block_s=100.0)
    with monkeypatch.context() as m:  # the block path never loads a whole channel
        m.setattr(resp_sep.preprocess, "load_signal", lambda *a, **k: pytest.fail("whole channel loaded"))
        a = respiration(path, opts)
    b = respiration(path, dataclasses.replace(opts, stream=False))
    assert a.channels == b.channels and a.notes == b.notes and a.duration_s == pytest.approx(b.duration_s)
    np.testing.assert_allclose(a.wave, b.wave, rtol=0, atol=1e-9)
    fa, fb = a.fusion, b.fusion
    assert (fa.flag == fb.flag).all()
    np.testing.assert_array_equal(fa.sign, fb.sign)
    np.testing.assert_array_equal(fa.lag_s, fb.lag_s)
    np.testing.assert_array_equal(a.rates().bpm, b.rates().bpm)
    extract_with(path, opts, OutputOptions()).save(str(tmp_path / "a.csv"), rates=str(tmp_path / "ra.csv"))
    extract_with(path, dataclasses.replace(opts, stream=False), OutputOptions()).save(
        str(tmp_path / "b.csv"), rates=str(tmp_path / "rb.csv"))
    assert (tmp_path / "ra.csv").read_bytes() == (tmp_path / "rb.csv").read_bytes()
    ya = np.loadtxt(tmp_path / "a.csv", delimiter=",", skiprows=1)
    yb = np.loadtxt(tmp_path / "b.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-6)  # written to 6 significant digits


def test_exact_median_and_zero_padded_resampling(nights):
    from scipy.signal import resample_poly

    from resp_sep.io import read_recording

    path = nights[0]
    rec = read_recording(path)
    ch = rec.channel("ECG")
    x = ch.read()
    rd = blockwise._open_reader(rec, "ECG", ch.index)
    try:
        np.testing.assert_array_equal(rd(0, rd.n), x)
        st = blockwise._channel_stats(rd, 10_000)
        assert st.median == np.median(x) and st.lo == x.min() and st.hi == x.max()
        st_odd = blockwise._channel_stats(rd, 7_777)
        assert st_odd.median == st.median
    finally:
        rd.close()
    for z in (x, x[:-1], x[:-333]):  # odd and even lengths, ends anywhere
        class Rd:
            def __call__(self, a, b, z=z):
                return z[max(0, a):min(z.size, b)]
        med = float(np.median(z))
        for fs_in, fs_out in ((128.0, 10.0), (256.0, 100.0), (128.0, 100.0), (600.0, 500.0), (100.0, 100.0)):
            r = blockwise._Resampled(Rd(), z.size, fs_in, fs_out, med)
            ref = z - med if r.identity else resample_poly(z - med, r.up, r.down)
            assert r.n_out == ref.size
            cuts = [0, 1, 17, r.n_out // 3, r.n_out // 3 + 1, r.n_out - 5, r.n_out]
            got = np.concatenate([r(a, b) for a, b in zip(cuts[:-1], cuts[1:])])
            np.testing.assert_array_equal(got, ref)


def test_block_path_declines_what_it_cannot_take(tmp_path, nights):
    from resp_sep.io import read_recording
    from resp_sep.simulate import simulate, write_simulation

    # WFDB: no range reader; the whole-array path runs and gives the same answer as before
    w = write_simulation(simulate(duration_s=300, fs=128.0, seed=5), tmp_path / "w", fmt="wfdb")
    rec = read_recording(w)
    avail = available_inputs(rec, None)
    assert blockwise.heuristic_sources(rec, "ecg", avail["ecg"].label, ["ecg_r_amplitude"], str(w)) is None
    assert np.isfinite(respiration(str(w), ExtractOptions()).wave).any()
    # a channel without beats: the whole-array path tries its other detector, then says why
    flat = write_simulation(simulate(duration_s=300, fs=128.0, seed=6), tmp_path / "f.edf")
    rec = read_recording(flat)
    avail = available_inputs(rec, None)
    lab = rec.channel("Nasal Pressure").label
    got = blockwise.heuristic_sources(rec, "ecg", lab, ["ecg_r_amplitude"], str(flat))
    assert got is None or got[0] == {}


@pytest.mark.skipif(not (DATA / "marsh-edf").is_dir(), reason="../shared/data/marsh-edf absent")
def test_real_night_block_wise():
    path = str(sorted((DATA / "marsh-edf").glob("*.edf"))[0])
    for kind, (got, whole, fail, ctx) in _whole_and_blocks(path, 300.0).items():
        outputs, failures, _, beats = got
        assert list(outputs) == list(whole) and failures == fail
        np.testing.assert_array_equal(beats if kind == "ecg" else beats[0],
                                      ctx.r_peaks() if kind == "ecg" else ctx.ppg_beats()[0])
        for k, w in whole.items():
            np.testing.assert_allclose(outputs[k].wave, w.wave, rtol=0, atol=RTOL * np.nanmax(np.abs(w.wave)), err_msg=k)


def test_most_prominent_peak_equals_scipy_loop():
    """The vectorised peak choice of NeuroKit2's detectors equals their find_peaks loop (plateaus, ties, long segments)."""
    import scipy.signal

    rng = np.random.default_rng(0)
    for trial in range(120):
        n = 2000
        x = np.round(np.cumsum(rng.standard_normal(n)) * rng.choice([0.3, 1.0, 5.0]))  # quantised: plateaus, ties
        if trial % 3 == 0:
            x = rng.integers(0, 4, n).astype(float)
        beg = np.sort(rng.choice(n - 800, 50, replace=False))
        end = beg + rng.integers(0, 45, beg.size)
        end[7] = beg[7] + 700  # longer than LONG_SEGMENT
        ref = np.full(beg.size, -1)
        for k in range(beg.size):
            locmax, props = scipy.signal.find_peaks(x[beg[k]:end[k]], prominence=(None, None))
            if locmax.size:
                ref[k] = beg[k] + locmax[np.argmax(props["prominences"])]
        np.testing.assert_array_equal(blockwise.most_prominent(x, beg, end), ref)


def test_full_temporary_folder_falls_back_to_whole_arrays(nights, monkeypatch):
    import tempfile

    from resp_sep.io import read_recording

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    path = nights[0]
    rec = read_recording(path)
    avail = available_inputs(rec, None)
    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    assert blockwise.heuristic_sources(rec, "ecg", avail["ecg"].label, ["ecg_r_amplitude"], path) is None
    assert np.isfinite(respiration(path, ExtractOptions()).wave).any()  # the whole-array path ran


def test_one_block_is_the_whole_array_path(nights):
    """A block longer than the recording gives the whole-array numbers bit for bit (no block boundary)."""
    for got, whole, _, _ in _whole_and_blocks(nights[0], 1e9).values():
        outputs = got[0]
        for k, w in whole.items():
            np.testing.assert_array_equal(outputs[k].wave, w.wave, err_msg=k)
