"""Polyphase resampling in numpy, equal bit for bit to ``scipy.signal.resample_poly(padtype="line")``.

Extraction only needs two resamplings (the channel to 200 Hz, the respiration to the output
rate), but importing ``scipy.signal`` to do them costs 0.7-1.5 s and ~70 MB per process - a
quarter of ``respsep extract``'s start-up. This module computes the same numbers without it:

* :func:`kaiser_lowpass`: ``scipy.signal.firwin(2 * 10 * max(up, down) + 1, 1 / max(up, down),
  window=("kaiser", 5.0))``, with the Bessel function I0 evaluated exactly as SciPy's Cephes
  ``i0`` does (same Chebyshev coefficients, same operation order, libm ``exp``).
* :class:`LineResampler`: ``upfirdn`` of the signal extended by the line through its first and
  last samples. Every output is the ordered sum over the filter taps of its polyphase branch,
  starting from 0, as in SciPy's C loop; here each branch's products are formed for many outputs
  at once from a strided view and summed with ``numpy.add.accumulate`` (a sequential sum, not
  numpy's pairwise one). Any block of outputs can be computed from the input samples it needs,
  which is what :mod:`resp_sep.stream` builds on.

tests/test_stream.py checks both against SciPy, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache

import numpy as np

#: elements of the per-branch product arrays formed at once (bounds the temporaries: 16 MB)
MAX_TERMS = 1 << 21

Reader = Callable[[int, int], np.ndarray]


def rate_ratio(fs_in: float, fs_out: float, max_denominator: int = 1000) -> tuple[int, int]:
    """``(up, down)``, coprime, for resampling ``fs_in`` to ``fs_out`` Hz (nearest fraction)."""
    if fs_in <= 0 or fs_out <= 0:
        raise ValueError(f"sampling rates must be positive (got {fs_in} -> {fs_out} Hz)")
    r = Fraction(fs_out / fs_in).limit_denominator(max_denominator)
    return r.numerator, r.denominator


# ------------------------------------------------------------------------------------------ filter


def _i0_coefficients() -> tuple[list[float], list[float]]:
    try:  # Cephes' Chebyshev coefficients, as numpy ships them (numpy >= 2 / older)
        from numpy.lib._function_base_impl import _i0A, _i0B
    except ImportError:  # pragma: no cover
        from numpy.lib.function_base import _i0A, _i0B
    return [float(v) for v in _i0A], [float(v) for v in _i0B]


def _chbevl(x: float, coef: list[float]) -> float:
    b0, b1, b2 = coef[0], 0.0, 0.0
    for c in coef[1:]:
        b2, b1 = b1, b0
        b0 = x * b1 - b2 + c
    return 0.5 * (b0 - b2)


def _i0(x: np.ndarray) -> np.ndarray:
    """Modified Bessel function I0, exactly as SciPy's (Cephes) ``scipy.special.i0``."""
    a, b = _i0_coefficients()
    out = np.empty(x.shape, dtype=np.float64)
    for i, v in enumerate(np.abs(np.asarray(x, dtype=np.float64)).ravel()):
        v = float(v)
        out.flat[i] = (math.exp(v) * _chbevl(v / 2.0 - 2.0, a) if v <= 8.0
                       else math.exp(v) * _chbevl(32.0 / v - 2.0, b) / math.sqrt(v))
    return out


@lru_cache(maxsize=32)
def kaiser_lowpass(numtaps: int, cutoff: float, beta: float = 5.0) -> np.ndarray:
    """``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))`` (odd ``numtaps``), read-only."""
    alpha = 0.5 * (numtaps - 1)
    m = np.arange(0, numtaps, dtype=np.float64) - alpha
    left, right = np.float64(0.0), np.float64(cutoff)
    h = 0
    h += right * np.sinc(right * m)
    h -= left * np.sinc(left * m)
    n = np.arange(0, numtaps, dtype=np.float64)
    a = (numtaps - 1) / 2.0
    win = _i0(beta * np.sqrt(1 - ((n - a) / a) ** 2.0)) / _i0(np.asarray(beta, dtype=np.float64))
    h *= win
    s = np.sum(h * np.cos(np.pi * m * 0.0))
    h /= s
    h.setflags(write=False)
    return h


@lru_cache(maxsize=32)
def _branches(up: int, down: int) -> tuple[np.ndarray, int]:
    """Polyphase branches ``(up, taps)`` (upfirdn's ``h_trans_flip``) and ``n_pre_remove``.

    The filter is ``resample_poly``'s: the Kaiser low-pass times ``up``, with ``n_pre_pad`` zeros
    in front so that the outputs sit at the filter's centre. ``resample_poly`` may also append
    zeros; those taps meet the earliest sample of a sum and add exact zeros, so they are left out.
    """
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = np.array(kaiser_lowpass(2 * half_len + 1, 1.0 / max_rate))
    h *= up
    n_pre_pad = down - half_len % down
    n_pre_remove = (half_len + n_pre_pad) // down
    h = np.concatenate([np.zeros(n_pre_pad), h])
    hpp = -(-h.size // up)
    full = np.zeros(hpp * up)
    full[:h.size] = h
    br = np.ascontiguousarray(full.reshape(-1, up).T[:, ::-1])  # br[t, j]: branch t, term j
    br.setflags(write=False)
    return br, n_pre_remove


# --------------------------------------------------------------------------------------- resampler


class LineResampler:
    """``scipy.signal.resample_poly(x, up, down, padtype="line")``, any block of outputs at a time.

    Parameters
    ----------
    n_in : int
        Length of the whole input signal.
    up, down : int
        Rate ratio, as :func:`rate_ratio` gives it.
    first, last : float
        The whole signal's first and last samples (they define the line extension).
    """

    def __init__(self, n_in: int, up: int, down: int, first: float, last: float):
        if n_in < 2:
            raise ValueError("need at least two input samples")
        self.n_in, self.up, self.down = int(n_in), int(up), int(down)
        self.n_out = -(-self.n_in * self.up // self.down)
        self.br, self.pre = _branches(self.up, self.down)
        self.hpp = self.br.shape[1]
        self.first, self.last = float(first), float(last)
        self.slope = (self.last - self.first) / (self.n_in - 1)

    def needs(self, k0: int, k1: int) -> tuple[int, int]:
        """Input range ``[i0, i1)`` that outputs ``[k0, k1)`` depend on (may reach past the ends)."""
        lo = ((k0 + self.pre) * self.down) // self.up - self.hpp + 1
        hi = ((k1 - 1 + self.pre) * self.down) // self.up
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
        return np.ascontiguousarray(out)

    def compute(self, k0: int, k1: int, read: Reader) -> np.ndarray:
        """Outputs ``[k0, k1)`` (float64); ``read(a, b)`` returns input samples ``x[a:b]``."""
        k0, k1 = max(0, k0), min(self.n_out, k1)
        if k1 <= k0:
            return np.zeros(0)
        step = max(self.up, (MAX_TERMS // self.hpp) // self.up * self.up)
        if k1 - k0 > step:  # block by block into one array (no list of blocks to join: half the memory)
            out = np.empty(k1 - k0)
            for k in range(k0, k1, step):
                out[k - k0:min(k1, k + step) - k0] = self.compute(k, min(k1, k + step), read)
            return out
        lo, hi = self.needs(k0, k1)
        a, b = max(lo, 0), min(hi, self.n_in)
        x = self.extended(lo, hi, read(a, b) if b > a else np.zeros(0))
        # x[p] as xt[p % down, p // down]: the samples a branch needs for consecutive outputs
        # (down apart) become contiguous rows, and consecutive taps consecutive rows
        d = self.down
        rows = -(-x.size // d)
        xt = np.zeros(rows * d)
        xt[:x.size] = x
        xt = np.ascontiguousarray(xt.reshape(rows, d).T)
        out = np.empty(k1 - k0)
        u0 = k0 + self.pre
        for r in range(min(self.up, k1 - k0)):  # outputs u0 + r, u0 + r + up, ...: one branch
            u = u0 + r
            m = len(range(r, k1 - k0, self.up))
            t = (u * d) % self.up
            first = (u * d) // self.up - self.hpp + 1 - lo  # x index of the branch's first term
            terms = np.empty((self.hpp, m))
            j = 0
            while j < self.hpp:
                p = first + j
                row, col = p % d, p // d
                run = min(self.hpp - j, d - row)
                np.multiply(xt[row:row + run, col:col + m], self.br[t, j:j + run, None], out=terms[j:j + run])
                j += run
            acc = terms[0] + 0.0  # upfirdn's sums start from +0.0 (a -0.0 first term becomes +0.0)
            for row in terms[1:]:  # sequential sum over the taps, in upfirdn's order
                acc += row
            out[r::self.up] = acc
        return out


def resample_line(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """``scipy.signal.resample_poly(x, up, down, padtype="line")`` for 1-D float64 ``x``."""
    x = np.asarray(x, dtype=np.float64)
    if up == down:
        return x.copy()
    r = LineResampler(x.size, up, down, x[0], x[-1])
    return r.compute(0, r.n_out, lambda a, b: x[a:b])
