"""resp_sep.stream: block-wise extraction equals the whole-array path, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from resp_sep.errors import InputError
from resp_sep.model import MultiEncoderAE
from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN, resample
from resp_sep.resample import kaiser_lowpass
from resp_sep.separate import Separator
from resp_sep.stream import LineResampler, extract_stream, rate_ratio
from resp_sep.writers import write_edf

RATES = [(256, 200), (250, 200), (500, 200), (360, 200), (128, 200), (1000, 200), (2048, 200),
         (333.3, 200), (200, 25), (200, 10), (200, 7), (200, 0.5)]


@pytest.mark.parametrize("fs_in,fs_out", RATES)
def test_numpy_resampling_equals_scipy_bit_for_bit(fs_in, fs_out):
    from scipy.signal import firwin, resample_poly

    up, down = rate_ratio(fs_in, fs_out)
    mr = max(up, down)
    assert np.array_equal(kaiser_lowpass(20 * mr + 1, 1.0 / mr), firwin(20 * mr + 1, 1.0 / mr, window=("kaiser", 5.0)))
    rng = np.random.default_rng(1)
    for x in (np.cumsum(rng.standard_normal(5000)) - 3.0, rng.standard_normal(777) * 1e-3,
              np.r_[np.zeros(3000), -np.ones(3000)], np.linspace(-1.0, 2.0, 4321)):
        assert np.array_equal(resample(x, fs_in, fs_out), resample_poly(x, up, down, padtype="line"))


@pytest.mark.parametrize("fs_in,fs_out", RATES)
def test_line_resampler_equals_resample_poly_in_any_blocks(fs_in, fs_out):
    rng = np.random.default_rng(0)
    up, down = rate_ratio(fs_in, fs_out)
    for n in (1000, 9973):
        x = np.cumsum(rng.standard_normal(n)) + 5.0
        ref = resample(x, fs_in, fs_out)
        r = LineResampler(n, up, down, x[0], x[-1])
        assert r.n_out == ref.size
        for blk in (1, 7, 333, 4096, 10**6):
            ks = range(0, r.n_out, blk) if blk > 1 else range(min(r.n_out, 300))  # blk 1: a prefix
            y = np.concatenate([r.compute(k, min(r.n_out, k + blk), lambda a, b: x[a:b]) for k in ks])
            assert np.array_equal(y, ref[:y.size]), (n, blk)


def _tiny_separator(seed: int = 0) -> Separator:
    torch.manual_seed(seed)
    m = MultiEncoderAE(n_encoders=2, channels=[4, 4, 8, 8], hidden=4, kernel_size=3).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    return Separator(m, 1, torch.device("cpu"), sign=-1.0)


def _signal(n: int, fs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    return np.sin(2 * np.pi * 1.1 * t) * (1 + 0.2 * np.sin(2 * np.pi * 0.25 * t)) + 0.05 * rng.standard_normal(n)


@pytest.mark.parametrize("fs,seconds,hop,batch,out_fs,block", [
    (256.0, 200.0, None, 16, 25.0, 1 << 16),       # the defaults
    (256.0, 200.0, None, 3, 25.0, 1000),           # many batches, block boundaries everywhere
    (256.0, 61.44 * 256 / 256 + 0.01, None, 16, 25.0, 777),   # one segment and a bit
    (200.0, 150.0, 6000, 2, 25.0, 4097),           # no input resampling, odd hop
    (250.0, 180.0, SEGMENT_LEN, 1, 200.0, 5000),   # no overlap, no output resampling
    (500.0, 130.0, 2048, 4, 10.0, 3001),           # 10-Hz grid, heavy overlap
])
def test_extract_stream_equals_whole_array_path(fs, seconds, hop, batch, out_fs, block):
    sep = _tiny_separator()
    x = _signal(int(seconds * fs), fs)
    ref = sep.extract(resample(x, fs, MODEL_FS), MODEL_FS, out_fs=out_fs, hop=hop, batch_size=batch)
    calls = []

    def read(a, b):
        calls.append((a, b))
        assert 0 <= a < b <= x.size
        return x[a:b]

    y = extract_stream(sep, read, x.size, fs, out_fs=out_fs, hop=hop, batch_size=batch, block=block)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.array_equal(y, ref)
    assert max(b - a for a, b in calls) < 3 * SEGMENT_LEN * max(batch, 2) * fs / MODEL_FS + 2 * block


def test_extract_stream_refuses_what_the_whole_path_refuses():
    sep = _tiny_separator()
    short = _signal(256 * 30, 256.0)
    with pytest.raises(InputError, match="too short"):
        extract_stream(sep, lambda a, b: short[a:b], short.size, 256.0)


@pytest.mark.parametrize("block", [2, 3, 7, 256])
def test_window_spectra_in_blocks_equals_all_at_once(block, monkeypatch):
    """Fusion's window quality is computed a block of windows at a time (flat memory): same numbers."""
    import resp_sep.quality as Q

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal(60_000))
    x[5000:5600] = np.nan
    x[40_000:40_010] = np.nan
    for n_win in (250, 258, 399):  # remainders of one window are merged into the block before
        starts = np.arange(n_win) * 150
        monkeypatch.setattr(Q, "SPECTRA_BLOCK", 10**9)
        whole = Q.window_spectra(x, 10.0, starts, 300)
        monkeypatch.setattr(Q, "SPECTRA_BLOCK", block)
        parts = Q.window_spectra(x, 10.0, starts, 300)
        for k in ("peak_hz", "concentration", "valid"):
            assert np.array_equal(getattr(parts, k), getattr(whole, k), equal_nan=True), (k, n_win)
