"""Bounded-memory extraction: read, resample, separate, stitch and resample again in blocks.

:meth:`resp_sep.separate.Separator.extract` holds the whole recording several times over (the
channel as read, its 200-Hz copy, two float64 stitching accumulators and their quotient): about
20-27 MB per hour, 2 GB for a 72-h Holter record. :func:`extract_stream` computes the *same
numbers* - bit for bit - while holding only a few batches of segments at a time, so its memory
does not depend on the recording's length (only the output itself grows: 0.36 MB per hour as
float32 at 25 Hz).

How it stays identical to the whole-array path
----------------------------------------------
* **Resampling** (:class:`LineResampler`): ``scipy.signal.resample_poly(x, up, down,
  padtype="line")`` is ``upfirdn`` with a fixed FIR filter over the signal extended at both ends
  by the straight line through its first and last samples. Each output sample is the same
  ordered sum of products of input samples (or extension values) and filter taps, whichever block
  it is computed in, provided the block starts on the polyphase grid and holds the sample's whole
  support. Blocks are built with the extension values computed exactly as scipy computes them
  (from the *whole* signal's first and last samples) and only fully supported outputs are kept.
* **Segments and batches** are the same: the same starts (:func:`segment_starts`), grouped into
  the same batches, so the model sees the same tensors.
* **Stitching**: each 200-Hz sample is the same sum over the same segments in the same order,
  divided by the same weight sum; a sample is final once the next batch starts after it.
* The 200-Hz respiration's *last* sample is needed before anything can be resampled to the
  output rate (the line extension uses it), so the last batch is run first and kept.

tests/test_stream.py checks equality with the whole-array path at many lengths, hops, batch
sizes and block sizes, with block boundaries falling everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache

import numpy as np

from resp_sep.errors import InputError
from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN

#: output samples computed per resampling block (bounds the temporary arrays)
BLOCK = 1 << 16

Reader = Callable[[int, int], np.ndarray]


def rate_ratio(fs_in: float, fs_out: float, max_denominator: int = 1000) -> tuple[int, int]:
    """``(up, down)`` exactly as :func:`resp_sep.preprocess.resample` chooses them."""
    if fs_in <= 0 or fs_out <= 0:
        raise ValueError(f"sampling rates must be positive (got {fs_in} -> {fs_out} Hz)")
    r = Fraction(fs_out / fs_in).limit_denominator(max_denominator)
    return r.numerator, r.denominator


@lru_cache(maxsize=16)
def _filter(up: int, down: int) -> tuple[np.ndarray, int]:
    """The filter (front zero padding included) and ``n_pre_remove`` of ``resample_poly``.

    ``resample_poly`` also pads the filter's end with zeros until it yields every wanted output;
    those taps meet the earliest input samples of each sum and add exact zeros, so they are left
    out here (the output count is computed from the signal's length instead).
    """
    from scipy.signal import firwin

    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = np.asarray(firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)), dtype=np.float64)
    h *= up
    n_pre_pad = down - half_len % down
    n_pre_remove = (half_len + n_pre_pad) // down
    h = np.concatenate([np.zeros(n_pre_pad), h])
    h.setflags(write=False)
    return h, n_pre_remove


class LineResampler:
    """``scipy.signal.resample_poly(x, up, down, padtype="line")``, any output block at a time.

    Parameters
    ----------
    n_in : int
        Length of the whole input signal.
    up, down : int
        Rate ratio (coprime), as :func:`rate_ratio` gives it.
    first, last : float
        The whole signal's first and last samples (they define the line extension).
    """

    def __init__(self, n_in: int, up: int, down: int, first: float, last: float):
        if n_in < 2:
            raise ValueError("need at least two input samples")
        self.n_in, self.up, self.down = int(n_in), int(up), int(down)
        self.n_out = -(-self.n_in * self.up // self.down)
        self.h, self.pre = _filter(self.up, self.down)
        self.hpp = -(-len(self.h) // self.up)  # taps per polyphase branch (upfirdn's h_per_phase)
        self.first, self.last = float(first), float(last)
        self.slope = (self.last - self.first) / (self.n_in - 1)

    def needs(self, k0: int, k1: int) -> tuple[int, int]:
        """Input index range ``[i0, i1)`` the outputs ``[k0, k1)`` depend on (may reach past the ends)."""
        u0, u1 = k0 + self.pre, k1 + self.pre
        lo = (u0 * self.down) // self.up - self.hpp + 1
        hi = ((u1 - 1) * self.down) // self.up
        return lo, hi + 1

    def extended(self, i0: int, i1: int, inside: np.ndarray) -> np.ndarray:
        """Samples ``[i0, i1)`` of the line-extended signal, given ``inside = x[max(i0,0):min(i1,n)]``."""
        n = self.n_in
        parts = []
        if i0 < 0:  # upfirdn's _extend_left: x[0] + idx * slope
            idx = np.arange(i0, min(0, i1), dtype=np.intp)
            parts.append(self.first + idx.astype(np.float64) * self.slope)
        parts.append(np.asarray(inside, dtype=np.float64))
        if i1 > n:  # _extend_right: x[n-1] + (idx - n + 1) * slope
            idx = np.arange(max(n, i0), i1, dtype=np.intp)
            parts.append(self.last + (idx - n + 1).astype(np.float64) * self.slope)
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if out.size != i1 - i0:
            raise ValueError("inside samples do not match the requested range")
        return out

    def compute(self, k0: int, k1: int, read: Reader) -> np.ndarray:
        """Outputs ``[k0, k1)`` (float64); ``read(a, b)`` returns input samples ``x[a:b]``."""
        from scipy.signal import upfirdn

        k0, k1 = max(0, k0), min(self.n_out, k1)
        if k1 <= k0:
            return np.zeros(0)
        lo, hi = self.needs(k0, k1)
        s = (lo // self.down) * self.down  # on the polyphase grid: s * up is a multiple of down
        a, b = max(s, 0), min(hi, self.n_in)
        inside = read(a, b) if b > a else np.zeros(0)
        x = self.extended(s, hi, inside)
        y = upfirdn(self.h, x, self.up, self.down)
        off = (k0 + self.pre) - s * self.up // self.down
        return y[off:off + (k1 - k0)]


# ------------------------------------------------------------------------------------ extraction


class _Checks:
    """What preprocess.check_channel verifies, gathered from the blocks as they are read."""

    def __init__(self):
        self.lo, self.hi = np.inf, -np.inf
        self.finite = True

    def update(self, x: np.ndarray) -> None:
        if x.size:
            if not np.all(np.isfinite(x)):
                self.finite = False
            self.lo = min(self.lo, float(np.min(x)))
            self.hi = max(self.hi, float(np.max(x)))


class NotStreamable(Exception):
    """The channel holds missing samples: the whole-array path (with gap filling) must be used."""


def extract_stream(sep, read: Reader, n_in: int, fs: float, *, out_fs: float = 25.0, hop: int | None = None,
                   batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
                   path: str | None = None, label: str = "", block: int = BLOCK) -> np.ndarray:
    """:meth:`Separator.extract` of a channel read block by block, in bounded memory; same output.

    Parameters
    ----------
    sep : Separator
    read : callable
        ``read(a, b)`` returns samples ``a..b-1`` of the channel (physical units, float64).
    n_in : int
        Samples in the channel.
    fs : float
        The channel's rate (Hz); resampled to 200 Hz block by block as ``load_signal`` would.
    label : str
        Channel label for error messages.

    Returns
    -------
    ndarray, float32
        Exactly ``sep.extract(load_signal(...).x, 200, out_fs=..., hop=..., batch_size=...)``.

    Raises
    ------
    InputError
        Too short for one segment, or a constant channel (as the whole-array path).
    NotStreamable
        The channel has NaN samples (the caller falls back to the whole-array path).
    """
    from resp_sep.separate import segment_starts, triangular_weights

    import torch

    checks = _Checks()

    def read_checked(a: int, b: int) -> np.ndarray:
        x = np.asarray(read(a, b), dtype=np.float64)
        checks.update(x)
        if not checks.finite:
            raise NotStreamable
        return x

    x_first = float(read_checked(0, 1)[0])
    x_last = float(read_checked(n_in - 1, n_in)[0])
    up, down = rate_ratio(fs, MODEL_FS)
    if up == down:
        n200 = n_in

        def get200(a: int, b: int) -> np.ndarray:
            return read_checked(a, b).astype(np.float32)
    else:
        r1 = LineResampler(n_in, up, down, x_first, x_last)
        n200 = r1.n_out

        def get200(a: int, b: int) -> np.ndarray:
            out = np.empty(b - a, dtype=np.float32)
            for k in range(a, b, block):
                out[k - a:min(b, k + block) - a] = r1.compute(k, min(b, k + block), read_checked)
            return out
    if n200 < SEGMENT_LEN:
        raise InputError(
            f"recording too short: {n200 / MODEL_FS:.1f} s, the separator needs at least "
            f"{SEGMENT_LEN / MODEL_FS:.2f} s", path)
    L = SEGMENT_LEN
    hop = L // 2 if hop is None else int(hop)
    if batch_size is None:
        batch_size = 128 if torch.device(sep.device).type == "cuda" else 16
    starts = segment_starts(n200, L, hop)
    w = triangular_weights(L, hop)
    batches = [starts[a:a + batch_size] for a in range(0, len(starts), batch_size)]

    def run(st: np.ndarray) -> np.ndarray:
        x = get200(int(st[0]), int(st[-1]) + L)
        segs = np.lib.stride_tricks.sliding_window_view(x, L)[st - st[0]]
        return np.asarray(sep.respiration_segments(np.ascontiguousarray(segs)), dtype=np.float64)

    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress:
            progress(done[0], len(starts))

    # the last batch first: the 200-Hz output's last sample (only the last segment covers it)
    last_out = run(batches[-1])
    tick(len(batches[-1]))
    y_last = (0.0 + w[L - 1] * last_out[-1][L - 1]) / (0.0 + w[L - 1])

    # streaming state: stitching accumulators from `base`, finished 200-Hz samples from `fbase`
    base = 0
    acc = np.zeros(0)
    wsum = np.zeros(0)
    fin = np.zeros(0)      # finished 200-Hz respiration, samples [fbase, fbase + len(fin))
    fbase = 0
    pieces: list[np.ndarray] = []
    r2 = None
    k_next = 0             # next output sample to compute
    resample_out = out_fs != MODEL_FS
    if resample_out:
        up2, down2 = rate_ratio(MODEL_FS, out_fs)
        resample_out = up2 != down2

    def emit(final_upto: int) -> None:
        """Compute the output samples whose inputs are all finished 200-Hz samples."""
        nonlocal k_next, fin, fbase
        # output k needs 200-Hz samples up to ((k + pre) * down) // up: finished when < final_upto
        k_end = min(r2.n_out, (final_upto * r2.up - 1) // r2.down - r2.pre + 1)
        if final_upto >= n200:
            k_end = r2.n_out

        def read_fin(a: int, b: int) -> np.ndarray:
            return fin[a - fbase:b - fbase]

        while k_next < k_end:
            k1 = min(k_end, k_next + block)
            pieces.append(r2.compute(k_next, k1, read_fin))
            k_next = k1
        if k_next < r2.n_out:  # drop finished samples no later output needs
            lo = r2.needs(k_next, k_next + 1)[0]
            keep_from = max(fbase, (lo // r2.down) * r2.down)  # compute() starts on the grid
            fin = fin[keep_from - fbase:]
            fbase = keep_from

    for bi, st in enumerate(batches):
        y = last_out if bi == len(batches) - 1 else run(st)
        if bi != len(batches) - 1:
            tick(len(st))
        end = int(st[-1]) + L
        if end - base > acc.size:  # grow the accumulators to cover this batch
            acc = np.concatenate([acc, np.zeros(end - base - acc.size)])
            wsum = np.concatenate([wsum, np.zeros(end - base - wsum.size)])
        for s, yk in zip(st, y):
            o = int(s) - base
            acc[o:o + L] += w * yk
            wsum[o:o + L] += w
        final = int(batches[bi + 1][0]) if bi + 1 < len(batches) else n200
        if not np.all(wsum[:final - base] > 0):  # cannot happen with segment_starts
            raise AssertionError("overlap-add left samples uncovered")
        done200 = acc[:final - base] / wsum[:final - base]
        acc, wsum = acc[final - base:], wsum[final - base:]
        base = final
        if not resample_out:
            pieces.append(done200)
            continue
        fin = np.concatenate([fin, done200])
        if r2 is None:
            r2 = LineResampler(n200, up2, down2, float(fin[0]), y_last)
        emit(base)
    if not (np.isfinite(checks.lo) and checks.hi - checks.lo
            > 1e-12 * max(1.0, abs(checks.lo), abs(checks.hi))):
        raise InputError(f"channel '{label}' is constant (flat line)", path)
    return np.concatenate(pieces).astype(np.float32)
