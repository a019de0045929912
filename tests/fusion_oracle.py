"""The fusion's window combination one window at a time: the reference ``fusion._fuse_windows`` is tested against.

Kept in the tests, not the package: production code runs the vectorised block version only.
"""

from __future__ import annotations

import numpy as np

from resp_sep.fusion import SHAPE_BAND, _std
from resp_sep.quality import window_spectra


def _fuse_windows_loop(X: np.ndarray, starts: np.ndarray, length: int, weights: np.ndarray, consensus: np.ndarray,
                       fs: float, max_lag: int, anchors: np.ndarray, active: np.ndarray, shape: bool):
    """The window loop of :func:`_fuse_windows`, one window at a time: the reference the tests compare it with."""
    taper = np.minimum(np.arange(length) + 1, length - np.arange(length)).astype(float)
    taper /= taper.max()
    n_src, n = X.shape
    acc = np.zeros(n)
    wsum = np.zeros(n)
    n_win = starts.size
    signs = np.zeros((n_win, n_src))
    lags = np.zeros((n_win, n_src))
    fused_conc = np.zeros(n_win)
    for w, a in enumerate(starts):
        if not active[w]:
            continue
        seg, sg, lg = _combine(X, a, length, weights[w], consensus[w], fs, max_lag, int(anchors[w]))
        if shape and np.isfinite(consensus[w]):
            seg = _around(seg, fs, consensus[w], *SHAPE_BAND)
        signs[w], lags[w] = sg, lg / fs
        ok = np.isfinite(seg)
        if not ok.any():
            continue
        # keep the waveform's polarity continuous across windows
        prev = acc[a:a + length] / np.where(wsum[a:a + length] > 0, wsum[a:a + length], 1)
        both = ok & (wsum[a:a + length] > 0)
        if both.sum() > 2 and np.dot(np.nan_to_num(seg[both]), prev[both]) < 0:
            seg, signs[w] = -seg, -signs[w]
        tw = np.where(ok, taper, 0.0)
        acc[a:a + length] += tw * np.nan_to_num(seg)
        wsum[a:a + length] += tw
        fused_conc[w] = window_spectra(seg, fs, np.zeros(1, int), length).concentration[0]
    wave = np.where(wsum > 0, acc / np.where(wsum > 0, wsum, 1), np.nan)
    return wave, signs, lags, fused_conc


def _combine(X: np.ndarray, a: int, length: int, weights: np.ndarray, f_c: float, fs: float,
             max_lag: int, anchor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One window's weighted sum of sources aligned to ``anchor``; returns (segment, signs, lags in samples)."""
    n_src, n = X.shape
    order = np.argsort(-weights)
    lag_lim = max_lag
    if np.isfinite(f_c) and f_c > 0:
        lag_lim = min(max_lag, int(fs / f_c / 3))  # a third of a breath: beyond that, sign and lag trade places
    signs = np.zeros(n_src)
    lags = np.zeros(n_src, int)
    ref = X[anchor, a:a + length]
    gain = _std(ref)
    num = np.zeros(length)
    den = np.zeros(length)
    for i in order:
        if weights[i] <= 0:
            continue
        if i == anchor:
            z, s, lag = ref, 1.0, 0
        else:
            z, s, lag = _align(X[i], a, length, ref, lag_lim)
        # each source at the anchor's scale in this window: a source's units (or a noisy window's size)
        # must not outweigh its quality weight
        sd = _std(z)
        if not sd > 0:
            continue
        ok = np.isfinite(z)
        num += np.where(ok, weights[i] * s * np.nan_to_num(z) * (gain / sd), 0.0)
        den += np.where(ok, weights[i], 0.0)
        signs[i], lags[i] = s, lag
    seg = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return seg, signs, lags


def _around(seg: np.ndarray, fs: float, f_c: float, lo: float, hi: float) -> np.ndarray:
    """``seg`` band-passed to [lo, hi] x ``f_c`` (raised-cosine edges, zero phase, reflected ends)."""
    ok = np.isfinite(seg)
    if ok.sum() < 8:
        return seg
    x = np.where(ok, seg, 0.0)
    m = x.size
    xp = np.concatenate((x[::-1], x, x[::-1]))
    f = np.fft.rfftfreq(xp.size, 1.0 / fs)
    f1, f2 = lo * f_c, hi * f_c
    w = 0.25 * f_c  # edge width (Hz)
    h = np.clip(np.minimum((f - (f1 - w)) / w, ((f2 + w) - f) / w), 0.0, 1.0)
    h = 0.5 - 0.5 * np.cos(np.pi * h)
    y = np.fft.irfft(np.fft.rfft(xp) * h, n=xp.size)[m:2 * m]
    return np.where(ok, y, np.nan)


def _align(x: np.ndarray, a: int, length: int, ref: np.ndarray, lag_lim: int) -> tuple[np.ndarray, float, int]:
    """The window of ``x`` shifted by the lag (|lag| <= lag_lim) and sign that best match ``ref``.

    All lags at once: the rows of a sliding view are the shifted windows; their Pearson correlations
    with ``ref`` are one matrix-vector product.
    """
    n = x.size
    lo, hi = max(0, a - lag_lim), min(n, a + length + lag_lim)
    view = np.lib.stride_tricks.sliding_window_view(x[lo:hi], length)  # (n_lags, length)
    lags = np.arange(view.shape[0]) + lo - a
    rows = np.nan_to_num(view)
    valid = np.isfinite(view)
    cnt = np.maximum(valid.sum(axis=1), 1)
    mean = rows.sum(axis=1) / cnt
    dev = np.where(valid, rows - mean[:, None], 0.0)
    sd = np.sqrt((dev ** 2).sum(axis=1) / cnt)
    r = np.nan_to_num(ref) - np.nanmean(ref) if np.isfinite(ref).any() else np.zeros(length)
    c = (dev @ r) / np.where(sd > 0, sd, np.inf)
    best = int(np.argmax(np.abs(c) - 1e-9 * np.abs(lags)))  # ties: the smallest lag
    lag = int(lags[best])
    s = 1.0 if c[best] >= 0 else -1.0
    return x[a + lag:a + lag + length], s, lag
