"""A channel in bounded memory: one statistics pass, the input checks, and block-wise readers.

Every ECG or PPG channel goes through respsep the same way, whatever its format (EDF, BDF, WFDB,
arrays) or length (a 5-min ICU excerpt is one block, a 48-h Holter a few dozen):

1. :func:`scan` reads the channel once, block by block (:meth:`resp_sep.io.Channel.read`), and
   learns what the later steps need from the whole recording: the number of usable samples, the
   extremes, the exact median (subtracted before every resampling), the runs of missing samples
   (NaN) with the values around them, and the runs of constant samples (a disconnected lead, an
   electrode off: :data:`FLAT_S` seconds or more of one value).
2. :func:`check` refuses what cannot carry a cardiac signal: one set of input checks, the same
   messages for every consumer (sources, separator, references).
3. :class:`Bridged` gives any sample range with the missing samples filled by straight lines
   between their neighbours (what ``np.interp`` over the whole channel gives, bit for bit), so
   filters and resamplers always see finite input; :func:`missing_on_grid` marks those samples
   (and the constant runs) missing on the 10-Hz source grid.
4. :class:`Resampled` gives output ranges of ``scipy.signal.resample_poly`` (zero-padded, median
   removed), equal bit for bit to resampling the whole channel; :class:`Spill` keeps a series
   computed block by block (a cleaned ECG) in an anonymous temporary file.

The exact median
    ``np.median`` of the bridged channel, without holding it: counted on the integer samples
    where the format stores them and nothing is missing (one pass; a radix selection over 16-bit
    digits), else selected over the bridged values' order-preserving 64-bit keys (a pass per 16
    bits). A channel of one block is simply held and ``np.median`` taken. The result does not
    depend on the block size.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import numpy as np

from resp_sep.errors import InputError
from resp_sep.resample import rate_ratio

#: core length of a block (s): the samples each block contributes
BLOCK_S = 1200.0
#: context read on each side of a block's core (s): filters and detectors settle well within it
MARGIN_S = 30.0
#: a run of identical samples at least this long (s) is not a signal (lead off, sensor disconnected,
#: a saturated amplifier): its samples are missing for every source. (On the real recordings the
#: longest such run in an ECG or PPG channel is 0.7 s.)
FLAT_S = 2.0
#: lowest and highest sampling rate (Hz) of a cardiac channel: below 50 Hz the QRS is not resolved
MIN_CARDIAC_FS, MAX_FS = 50.0, 100_000.0
#: samples read at once by the passes over a channel
SCAN_BLOCK = 1 << 20


@dataclass
class ChannelStats:
    """What one pass over a channel learns (see :func:`scan`).

    Attributes
    ----------
    n : int
        Samples.
    fs : float
        Sampling rate (Hz).
    n_finite : int
        Samples that are not missing.
    n_flat : int
        Finite samples inside constant runs (:data:`FLAT_S`).
    lo, hi : float
        Smallest and largest finite sample (physical units; NaN when none).
    median : float
        Exact median of the bridged channel (physical units).
    nan_runs : numpy.ndarray, shape (k, 2)
        Missing-sample runs ``[start, end)``.
    nan_fill : numpy.ndarray, shape (k, 2)
        The finite samples before and after each run (NaN at the channel's ends).
    flat_runs : numpy.ndarray, shape (m, 2)
        Constant runs ``[start, end)`` of at least :data:`FLAT_S`.
    first, last : float
        The bridged channel's first and last samples.
    """

    n: int
    fs: float
    n_finite: int
    n_flat: int
    lo: float
    hi: float
    median: float
    nan_runs: np.ndarray
    nan_fill: np.ndarray
    flat_runs: np.ndarray
    first: float
    last: float
    warnings: list = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.n / self.fs

    @property
    def usable_s(self) -> float:
        """Seconds of signal: neither missing nor in a constant run."""
        return (self.n_finite - self.n_flat) / self.fs


# ------------------------------------------------------------------------------------------- runs


class _Runs:
    """Runs of True in a boolean sequence fed block by block: ``[start, end)`` of each run."""

    def __init__(self):
        self.starts: list[np.ndarray] = []
        self.ends: list[np.ndarray] = []
        self.open_at: int | None = None  # start of a run still going at the last block's end

    def feed(self, mask: np.ndarray, offset: int) -> None:
        if mask.size == 0:
            return
        d = np.diff(mask.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
        s = np.flatnonzero(d == 1) + offset
        e = np.flatnonzero(d == -1) + offset
        if self.open_at is not None:
            if mask[0]:
                s[0] = self.open_at  # the run goes on from the last block
            else:
                self.starts.append(np.array([self.open_at]))
                self.ends.append(np.array([offset]))
        self.open_at = None
        if mask[-1]:
            self.open_at = int(s[-1])
            s, e = s[:-1], e[:-1]
        self.starts.append(s)
        self.ends.append(e)

    def close(self, n: int) -> np.ndarray:
        if self.open_at is not None:
            self.starts.append(np.array([self.open_at]))
            self.ends.append(np.array([n]))
            self.open_at = None
        s = np.concatenate(self.starts) if self.starts else np.zeros(0, np.int64)
        e = np.concatenate(self.ends) if self.ends else np.zeros(0, np.int64)
        return np.stack([s, e], axis=1).astype(np.int64) if s.size else np.zeros((0, 2), np.int64)


# ------------------------------------------------------------------------------------------- scan


def scan(ch, *, block: int = SCAN_BLOCK, whole_below: int | None = None) -> ChannelStats:
    """One pass over a channel: usable samples, extremes, exact median, missing and constant runs.

    Parameters
    ----------
    ch : resp_sep.io.Channel
    block : int
        Samples read at once.
    whole_below : int, optional
        Channels of at most this many samples are held whole for the median (one block of the
        caller's pipeline); default ``block``.

    Raises
    ------
    InputError
        The file cannot be read.
    """
    n, fs = int(ch.n_samples), float(ch.fs)
    whole_below = block if whole_below is None else whole_below
    digital = ch.digital
    nan_runs, same_runs = _Runs(), _Runs()
    n_finite, lo, hi = 0, np.inf, -np.inf
    prev = np.nan  # the last sample of the previous block
    lefts: list = []  # the finite sample before each missing run, in run order
    rights: list = []  # the finite sample after each missing run
    first_finite, last_finite = np.nan, np.nan
    held = [] if n <= whole_below else None
    top, hist = 0, None
    total = 0  # the digital samples' sum (a format's checksum)
    if digital is not None:
        top = max(0, digital.bits - 16)
        hist = np.zeros(1 << min(16, digital.bits), np.int64)
    for a in range(0, n, block):
        b = min(n, a + block)
        if digital is not None:
            d = np.asarray(digital.read(a, b))
            x = np.asarray(digital.to_physical(d), dtype=np.float64)
            total += int(np.sum(d, dtype=np.int64))
        else:
            x = ch.read(a, b)
        if held is not None:
            held.append(x)
        fin = np.isfinite(x)
        k = int(fin.sum())
        if k:
            xf = x if k == x.size else x[fin]
            lo, hi = min(lo, float(xf.min())), max(hi, float(xf.max()))
            if not np.isfinite(first_finite):
                first_finite = float(xf[0])
            last_finite = float(xf[-1])
            if hist is not None:
                dv = d if k == x.size else d[fin]
                hist += np.bincount((dv.astype(np.int64) + (1 << (digital.bits - 1))) >> top, minlength=hist.size)
        n_finite += k
        miss = ~fin
        was_missing = a > 0 and not np.isfinite(prev)
        if k < x.size or was_missing:
            before = np.concatenate(([was_missing], miss[:-1]))
            starts = np.flatnonzero(miss & ~before)
            ends = np.flatnonzero(~miss & before)
            lefts.extend(float(x[s - 1]) if s > 0 else float(prev) for s in starts)
            rights.extend(float(x[e]) for e in ends)
        nan_runs.feed(miss, a)
        same = np.empty(x.size, bool)  # each sample equal to the one before it
        same[0] = x[0] == prev
        np.equal(x[1:], x[:-1], out=same[1:])
        same_runs.feed(same, a)
        prev = x[-1]
    if digital is not None and digital.checksum is not None:
        digital.checksum(total)
    nan = nan_runs.close(n)
    rights.extend([np.nan] * (len(lefts) - len(rights)))  # a run reaching the channel's end
    fill = np.array([lefts, rights], dtype=np.float64).T.reshape(-1, 2)
    flat = same_runs.close(n)
    if flat.size:  # k "same as before" flags: a constant stretch of k + 1 samples starting one earlier
        flat = np.stack([flat[:, 0] - 1, flat[:, 1]], axis=1)
        flat = flat[(flat[:, 1] - flat[:, 0]) >= FLAT_S * fs]
    n_flat = int((flat[:, 1] - flat[:, 0]).sum()) if flat.size else 0
    st = ChannelStats(n, fs, n_finite, n_flat, float(lo), float(hi), float("nan"), nan, fill, flat,
                      float(first_finite), float(last_finite))
    if n_finite == 0:
        st.lo = st.hi = float("nan")
        return st
    if nan.size:  # the bridged channel's ends
        if nan[0, 0] == 0:
            st.first = float(fill[0, 1])
        if nan[-1, 1] == n:
            st.last = float(fill[-1, 0])
    if held is not None:
        x = np.concatenate(held) if len(held) > 1 else held[0]
        st.median = float(np.median(Bridged(ch, st).fill(x, 0)))
    elif hist is not None and not nan.size:
        st.median = _digital_median(digital, hist, n_finite, n, block)
    else:
        st.median = _float_median(Bridged(ch, st), n, block)
    return st


# ----------------------------------------------------------------------------------------- median


class _InMemory:
    """A channel over an array (what :func:`scan` needs of :class:`resp_sep.io.Channel`)."""

    digital = None

    def __init__(self, x: np.ndarray, fs: float):
        self.x, self.fs, self.n_samples = x, float(fs), int(x.size)

    def read(self, a: int = 0, b: int | None = None) -> np.ndarray:
        return self.x[a:b]


def array_stats(x: np.ndarray, fs: float) -> ChannelStats:
    """:func:`scan` of an array held in memory (the same statistics, one pass)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return scan(_InMemory(x, fs), block=max(1, x.size), whole_below=x.size)


def _pair(n: int) -> tuple[int, int]:
    return (n - 1) // 2, n // 2


def _mean_pair(va: float, vb: float, n: int) -> float:
    # np.median: the mean of the two middle values (np.mean of the pair), the middle one for odd n
    return float(np.mean(np.array([va, vb]))) if n % 2 == 0 else float(va)


def _select(hist_fn, total_bits: int, k: int, first_hist: np.ndarray | None = None) -> int:
    """The key of the ``k``-th smallest (0-based) of non-negative integer keys of ``total_bits`` bits.

    ``hist_fn(prefix, prefix_bits, shift, width)`` counts the digit ``(key >> shift) & (2**width - 1)``
    of the keys whose top ``prefix_bits`` bits equal ``prefix``; the first digit's counts may be given.
    """
    prefix, pbits = 0, 0
    while pbits < total_bits:
        width = min(16, total_bits - pbits)
        shift = total_bits - pbits - width
        h = first_hist if (pbits == 0 and first_hist is not None) else hist_fn(prefix, pbits, shift, width)
        c = np.cumsum(h)
        d = int(np.searchsorted(c, k, side="right"))
        k -= int(c[d - 1]) if d > 0 else 0
        prefix = (prefix << width) | d
        pbits += width
    return prefix


def _digital_median(digital, first_hist: np.ndarray, n_valid: int, n: int, block: int) -> float:
    bits = digital.bits
    bias = 1 << (bits - 1)

    def hist_fn(prefix: int, pbits: int, shift: int, width: int) -> np.ndarray:
        h = np.zeros(1 << width, np.int64)
        for a in range(0, n, block):
            key = np.asarray(digital.read(a, min(n, a + block))).astype(np.int64) + bias
            if digital.invalid is not None:
                key = key[key != digital.invalid + bias]
            key = key[(key >> (bits - pbits)) == prefix] if pbits else key
            h += np.bincount((key >> shift) & ((1 << width) - 1), minlength=1 << width)
        return h

    ka, kb = _pair(n_valid)
    da = _select(hist_fn, bits, ka, first_hist) - bias
    db = da if kb == ka else _select(hist_fn, bits, kb, first_hist) - bias
    va, vb = digital.to_physical(np.array([da, db]))
    return _mean_pair(float(va), float(vb), n_valid)


_SIGN = np.uint64(1 << 63)


def _float_keys(x: np.ndarray) -> np.ndarray:
    """Order-preserving unsigned 64-bit keys of float64 values (negative: all bits flipped)."""
    b = np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)
    return np.where(b & _SIGN, ~b, b | _SIGN)


def _from_key(k: int) -> float:
    b = np.uint64(k)
    b = b & ~_SIGN if b & _SIGN else ~b
    return float(np.array([b], dtype=np.uint64).view(np.float64)[0])


def _float_median(reader: Bridged, n: int, block: int) -> float:
    def hist_fn(prefix: int, pbits: int, shift: int, width: int) -> np.ndarray:
        h = np.zeros(1 << width, np.int64)
        for a in range(0, n, block):
            key = _float_keys(reader(a, min(n, a + block)))
            if pbits:
                key = key[(key >> np.uint64(64 - pbits)) == np.uint64(prefix)]
            h += np.bincount(((key >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64),
                             minlength=1 << width)
        return h

    ka, kb = _pair(n)
    va = _from_key(_select(hist_fn, 64, ka))
    vb = va if kb == ka else _from_key(_select(hist_fn, 64, kb))
    return _mean_pair(va, vb, n)


# ------------------------------------------------------------------------------------------ checks


def check(st: ChannelStats, label: str, path: str | None, *, min_fs: float = MIN_CARDIAC_FS,
          min_s: float | None = None, what: str | None = None) -> None:
    """Refuse a channel that cannot carry the signal asked of it (one-line :class:`InputError`, exit 3).

    The one set of input checks: a sampling rate within ``min_fs`` .. 100 kHz; some finite samples,
    at least half of them finite; not constant; for sources (``min_s`` given) at least ``min_s``
    seconds.

    Parameters
    ----------
    st : ChannelStats
    label : str
        The channel, for the message.
    min_fs : float
        Lowest acceptable rate (Hz): 50 for ECG/PPG, 1 for respiration references.
    min_s : float, optional
        Shortest acceptable duration (s).
    what : str, optional
        ``"ECG"`` or ``"PPG"`` in the message about length.
    """
    if not (min_fs <= st.fs <= MAX_FS):
        raise InputError(f"channel '{label}' sampled at {st.fs:g} Hz; need {min_fs:g} Hz to 100 kHz", path)
    if st.n_finite == 0:
        raise InputError(f"channel '{label}' contains only NaN/missing values", path)
    frac = st.n_finite / st.n
    if frac < 0.5:
        raise InputError(f"channel '{label}' is mostly NaN/missing ({100 * (1 - frac):.0f}%)", path)
    if (st.hi - st.lo) <= 1e-12 * max(1.0, abs(st.lo), abs(st.hi)):
        raise InputError(f"channel '{label}' is constant (flat line)", path)
    if min_s is not None and st.n < min_s * st.fs:
        raise InputError(f"{what or 'channel ' + repr(label)} too short or mostly missing "
                         f"({st.n_finite / st.fs:.0f} s usable)", path)


# ----------------------------------------------------------------------------------------- readers


class Bridged:
    """Sample ranges of a channel with missing samples filled by straight lines between their
    finite neighbours (constant beyond the first/last finite sample; zeros if none is finite).

    Equal, bit for bit, to ``np.interp`` over the whole channel (:func:`resp_sep.preprocess.fill_gaps`):
    each filled sample is computed from the same two neighbours with numpy's arithmetic.
    """

    def __init__(self, ch, st: ChannelStats):
        self.ch, self.st = ch, st
        self.n = st.n
        self._cache = None

    def fill(self, x: np.ndarray, a: int) -> np.ndarray:
        """``x`` (samples ``a..a+len(x)-1`` as read) with its missing samples filled; a copy when any are."""
        runs = self.st.nan_runs
        if not runs.size:
            return x
        b = a + x.size
        i0 = int(np.searchsorted(runs[:, 1], a, side="right"))
        i1 = int(np.searchsorted(runs[:, 0], b, side="left"))
        if i1 <= i0:
            return x
        x = np.array(x, dtype=np.float64)
        for (s, e), (v0, v1) in zip(runs[i0:i1], self.st.nan_fill[i0:i1]):
            lo, hi = max(s, a), min(e, b)
            if np.isnan(v0) and np.isnan(v1):
                x[lo - a:hi - a] = 0.0
            elif np.isnan(v0):
                x[lo - a:hi - a] = v1
            elif np.isnan(v1):
                x[lo - a:hi - a] = v0
            else:
                x0, x1 = float(s - 1), float(e)
                slope = (v1 - v0) / (x1 - x0)
                x[lo - a:hi - a] = slope * (np.arange(lo, hi, dtype=np.float64) - x0) + v0
        return x

    def prefetch(self, a: int, b: int) -> None:
        """Read samples ``[a, b)`` once; later calls within the range are served from it."""
        a, b = max(0, a), min(self.n, b)
        self._cache = (a, b, self.fill(self.ch.read(a, b), a))

    def __call__(self, a: int, b: int) -> np.ndarray:
        """Bridged samples ``[a, b)`` (float64), clipped to the channel."""
        a, b = max(0, a), min(self.n, b)
        c = self._cache
        if c is not None and c[0] <= a and b <= c[1]:
            return c[2][a - c[0]:b - c[0]]
        return self.fill(self.ch.read(a, b), a)


class Resampled:
    """Output ranges of ``scipy.signal.resample_poly(x - median, up, down)`` of a whole channel.

    Outputs ``[k0, k1)`` are computed by ``resample_poly`` on an input block that starts on a
    multiple of ``down`` (so its outputs fall on the whole signal's output grid) and reaches
    :attr:`reach` input samples beyond the filter's support on both sides: SciPy's loop forms each
    output from the same products in the same order as for the whole signal, so the values are
    equal bit for bit (tests/test_chunks.py). At the signal's ends the block ends there too.
    """

    def __init__(self, rd, n_in: int, fs: float, fs_out: float, median: float):
        self.rd, self.median, self.n_in = rd, median, n_in
        self.up, self.down = rate_ratio(fs, fs_out)
        self.identity = self.up == self.down
        self.n_out = n_in if self.identity else -(-n_in * self.up // self.down)
        # the filter (2 * 10 * max(up, down) + 1 taps at the upsampled rate) spans this many input samples each side
        self.reach = 10 * max(self.up, self.down) // self.up + 2 * (self.down // self.up + 1) + 8

    def inputs(self, k0: int, k1: int) -> tuple[int, int]:
        """Input samples ``[s, e)`` read for outputs ``[k0, k1)``."""
        if self.identity:
            return max(0, k0), min(self.n_in, k1)
        s = max(0, (k0 * self.down // self.up - self.reach) // self.down * self.down)
        e = min(self.n_in, -(-k1 * self.down // self.up) + self.reach)
        return s, e

    def __call__(self, k0: int, k1: int, read=None) -> np.ndarray:
        """Outputs ``[k0, k1)``; ``read(a, b)`` gives the inputs when given (default: the reader it was made with)."""
        from scipy.signal import resample_poly

        k0, k1 = max(0, k0), min(self.n_out, k1)
        s, e = self.inputs(k0, k1)
        x = (self.rd if read is None else read)(s, e) - self.median
        if self.identity:
            return x
        y = resample_poly(x, self.up, self.down)
        j = s * self.up // self.down
        return y[k0 - j:k1 - j]


def blocks(n: int, block: int, margin: int, cancel=None):
    """``(core_start, core_end, read_start, read_end)`` covering ``[0, n)``; stops when ``cancel`` is set."""
    for c0 in range(0, n, block):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        c1 = min(n, c0 + block)
        yield c0, c1, max(0, c0 - margin), min(n, c1 + margin)


class Cancelled(Exception):
    """Another part of the extraction failed or was interrupted: stop after the current block."""


class Spill:
    """A float64 series written block by block and read back by ranges: an anonymous temporary file,
    or memory when the temporary folder cannot be written (:attr:`note` then says so)."""

    def __init__(self):
        self.note = ""
        try:
            self.f = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        except OSError as e:
            self._memory(f"the temporary folder cannot be written ({e.strerror or e})")
        self.n = 0

    def _memory(self, why: str) -> None:
        self.f = None
        self.parts: list[np.ndarray] = []
        self.note = (f"{why}: intermediate signals are kept in memory, not in temporary files "
                     "(memory grows with the recording; set TMPDIR to a writable folder)")

    def append(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if self.f is not None:
            try:
                self.f.seek(self.n * 8)
                x.tofile(self.f)
            except OSError as e:  # the temporary folder is full: what was written is read back into memory
                self.f.seek(0)
                old = np.fromfile(self.f, dtype=np.float64, count=self.n)
                self.f.close()
                self._memory(f"the temporary folder is full ({e.strerror or e})")
                self.parts = [old]
                self.parts.append(x.copy())
        else:
            self.parts.append(x.copy())
        self.n += x.size

    def _joined(self) -> np.ndarray:
        if len(self.parts) > 1:
            self.parts = [np.concatenate(self.parts)]
        return self.parts[0] if self.parts else np.zeros(0)

    def __call__(self, a: int, b: int) -> np.ndarray:
        a, b = max(0, a), min(self.n, b)
        if self.f is None:
            return self._joined()[a:b]
        self.f.seek(a * 8)
        return np.fromfile(self.f, dtype=np.float64, count=max(0, b - a))

    def take(self, idx: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
        """Samples at ``idx`` (rows of sorted indices within the series), read one range at a time."""
        idx = np.asarray(idx)
        out = np.empty(idx.shape)
        if idx.size == 0:
            return out
        flat_lo, flat_hi = idx.min(axis=1), idx.max(axis=1)
        if np.any(np.diff(flat_lo) < 0):  # rows in reading order, results in the caller's
            o = np.argsort(flat_lo, kind="stable")
            out[o] = self.take(idx[o], chunk)
            return out
        i = 0
        while i < idx.shape[0]:
            a = int(flat_lo[i])
            j = int(np.searchsorted(flat_lo, a + chunk, side="left"))
            j = max(j, i + 1)
            b = int(flat_hi[i:j].max()) + 1
            out[i:j] = self(a, b)[idx[i:j] - a]
            i = j
        return out

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
        self.parts = []


def missing_on_grid(st: ChannelStats, n_grid: int, grid_fs: float, extra: np.ndarray | None = None) -> np.ndarray:
    """Missing-sample mask on a grid of ``n_grid`` samples at ``grid_fs`` Hz, shape (n_grid,).

    A grid sample is missing when any channel sample in its span (``floor(i * grid_fs / fs)``) is
    missing or lies in a constant run; ``extra`` adds runs ``[start, end)`` of channel samples
    (e.g. stretches without heart beats).
    """
    out = np.zeros(n_grid, bool)
    runs = [r for r in (st.nan_runs, st.flat_runs, extra) if r is not None and r.size]
    if not runs:
        return out
    r = np.concatenate(runs)
    g0 = np.clip(np.floor(r[:, 0] * grid_fs / st.fs).astype(np.int64), 0, n_grid - 1)
    g1 = np.clip(np.floor((r[:, 1] - 1) * grid_fs / st.fs).astype(np.int64), 0, n_grid - 1)
    d = np.zeros(n_grid + 1, np.int64)
    np.add.at(d, g0, 1)
    np.add.at(d, g1 + 1, -1)
    return np.cumsum(d[:-1]) > 0
