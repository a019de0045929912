"""The heuristic sources of one ECG or PPG channel in bounded memory: block by block, with margins.

:mod:`resp_sep.sources` computes every heuristic source from the whole channel at once: the ECG
at its own rate, NeuroKit2's cleaned copy, gradients and smoothed gradients, the PPG at 100 Hz and
its cleaned copy - several float64 arrays per channel sample, ~90 MB per hour of a 256-Hz PSG,
1.9 GB for a 24-h record. This module computes the *same sources* while holding only one block
of samples at a time (:data:`BLOCK_S` plus :data:`MARGIN_S` each side); what is kept for the whole
recording is small: the beats, a few values per beat, and the 10-Hz source waveforms.

How each step stays equal to the whole-array one
------------------------------------------------
* **Reading** (:class:`EdfRanges`): the channel's digital samples are copied out of memory-mapped
  record ranges and scaled exactly as pyedflib scales them (checked against pyedflib on every
  channel); each block is read once for everything computed from it.
* **The channel's median** (subtracted before every resampling, :func:`resp_sep.sources._resample`)
  is computed exactly from a histogram of the digital values (a first reading pass).
* **Resampling** is an FIR filter: :class:`_Resampled` runs ``scipy.signal.resample_poly`` on
  blocks aligned to its output grid, which gives the whole signal's outputs bit for bit.
* **Cleaning** (NeuroKit2 ``ecg_clean``/``ppg_clean``: zero-phase IIR Butterworth filters) runs on
  each block with its margins; only the block's core is kept. An IIR filter's response to what
  lies beyond the margin has decayed far below float64 precision after 30 s, but its rounding
  differs: cleaned samples equal the whole-array ones to ~1e-15 relative, not bit for bit.
* **Beat detection** re-implements the two NeuroKit2 detectors used (``ecg_peaks`` method
  ``neurokit``; ``ppg_findpeaks`` method ``elgendi``) around their only whole-recording quantities:
  the ECG detector drops QRS candidates shorter than 0.4 x the *recording's* mean candidate length,
  Elgendi's threshold adds 2 % of the *recording's* mean squared PPG. Candidates (start, end and
  most prominent peak, NeuroKit2's own ``scipy.signal.find_peaks`` call) are found block by block;
  the recording-wide filter, the minimum-delay chain and NeuroKit2's artefact correction
  (``signal_fixpeaks``, Kubios; :mod:`resp_sep.kubios`, the same correction without its per-beat
  Python loops) then run on the whole list of candidates, as NeuroKit2 runs them.
* **Per-beat values and the 10-Hz sources**: the cleaned signal (core samples) is written to an
  anonymous temporary file and read back around the beats; the 10-Hz series (interpolation,
  band-pass, NeuroKit2 ``ecg_rsp``) are computed on the whole grid by the same functions as the
  whole-array path (:mod:`resp_sep.sources`).

Beats equal the whole-array path's (tests/test_blockwise.py, also at block boundaries); sources
equal it to ~1e-12 relative. Anything unusual - WFDB or BDF input, missing samples, a channel
the checks would refuse, too few beats (the whole-array path then tries another detector) - is
answered with ``None`` and the caller runs the whole-array path, which gives the proper error.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from resp_sep.kubios import fixpeaks_kubios
from resp_sep.parallel import release_memory
from resp_sep.resample import rate_ratio
from resp_sep.sources import (
    GRID_FS,
    MAX_ECG_FS,
    PPG_FS,
    SignalContext,
    SourceOutput,
    _bandpass,
    _n_out,
    compute_sources,
    fit_length,
)

#: core length of a block (s): the samples each block contributes
BLOCK_S = 1200.0
#: context read on each side of a block's core (s): filters and detectors settle well within it
MARGIN_S = 30.0
#: the sources this module computes (the default fusion set's heuristics)
BASELINES = {"ecg_baseline", "ppg_baseline"}


class NotBlockwise(Exception):
    """The channel or its result is out of the ordinary: the whole-array path must run."""


class Cancelled(Exception):
    """Another part of the extraction failed or was interrupted: stop after the current block."""


# ------------------------------------------------------------------------------------------ reading


class EdfRanges:
    """Samples ``[a, b)`` of one EDF channel, read record by record with numpy, scaled as pyedflib scales.

    Parameters
    ----------
    path : str
    label : str
        The channel (as pyedflib lists it, annotation signals excluded).
    index : int
        Its index among the non-annotation signals.
    """

    def __init__(self, path: str, label: str, index: int):
        from pathlib import Path

        from resp_sep.integrity import check_edf

        hdr = check_edf(Path(path))
        if hdr.bdf or hdr.discontinuous or hdr.non_ascii:
            raise NotBlockwise("BDF or EDF+D")
        sigs = [s for s in hdr.signals if not s.is_annotation]
        if index >= len(sigs) or sigs[index].label.strip() != label:
            raise NotBlockwise("channel index")
        s = sigs[index]
        self.spr = s.spr
        self.n = s.spr * hdr.n_records
        self.record_bytes = hdr.record_samples * 2
        self.col = s.offset * 2
        self.header_bytes = hdr.header_bytes
        self.dmin, self.dmax = s.dmin, s.dmax
        # edflib's scaling: bitvalue * (offset + digital)
        self.bitvalue = (s.pmax - s.pmin) / (s.dmax - s.dmin)
        self.offset = s.pmax / self.bitvalue - s.dmax
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()

    def close(self) -> None:
        self._cache = None
        self._f.close()

    def digital(self, a: int, b: int) -> np.ndarray:
        """Digital samples ``[a, b)`` (int32), clipped to the channel.

        The records are mapped, not read: only this channel's bytes are copied out, and the mapping
        is closed again (mapped file pages would count in the process's resident memory).
        """
        import mmap

        a, b = max(0, a), min(self.n, b)
        if b <= a:
            return np.zeros(0, np.int32)
        r0, r1 = a // self.spr, -(-b // self.spr)
        off = self.header_bytes + r0 * self.record_bytes
        skip = off % mmap.ALLOCATIONGRANULARITY
        size = (r1 - r0) * self.record_bytes
        with mmap.mmap(self._f.fileno(), size + skip, access=mmap.ACCESS_READ, offset=off - skip) as mm:
            raw = np.frombuffer(mm, dtype=np.uint8, count=size, offset=skip).reshape(r1 - r0, self.record_bytes)
            cols = np.ascontiguousarray(raw[:, self.col:self.col + 2 * self.spr])
            del raw
        d = cols.view("<i2").reshape(-1)
        return d[a - r0 * self.spr:b - r0 * self.spr].astype(np.int32)

    def physical(self, d: np.ndarray) -> np.ndarray:
        return self.bitvalue * (self.offset + d.astype(np.float64))

    def prefetch(self, a: int, b: int) -> None:
        """Read samples ``[a, b)`` once; later calls within the range are served from it."""
        a, b = max(0, a), min(self.n, b)
        self._cache = (a, b, self.physical(self.digital(a, b)))

    def __call__(self, a: int, b: int) -> np.ndarray:
        """Physical samples ``[a, b)`` (float64), clipped to the channel."""
        a, b = max(0, a), min(self.n, b)
        c = getattr(self, "_cache", None)
        if c is not None and c[0] <= a and b <= c[1]:
            return c[2][a - c[0]:b - c[0]]
        return self.physical(self.digital(a, b))


#: edflib opens a file once per process: the pyedflib check of the two channels' threads takes turns
_EDFLIB = threading.Lock()


def _open_reader(rec, label: str, index: int) -> EdfRanges:
    """An :class:`EdfRanges` for the channel, checked against pyedflib's values on its first and last records."""
    if str(getattr(rec, "format", "")) not in ("edf", "edf+"):
        raise NotBlockwise("not EDF")
    ch = rec.channel(label)
    rd = EdfRanges(str(rec.path), label, index)
    try:
        if rd.n != ch.n_samples:
            raise NotBlockwise("sample count")
        k = min(rd.n, 4 * rd.spr)
        with _EDFLIB:
            blocks = ch.blocks()
            if blocks is None:
                raise NotBlockwise("no range reader")
            with blocks as reader:
                for a in (0, rd.n - k):
                    if not np.array_equal(rd(a, a + k), reader(a, a + k)):
                        raise NotBlockwise("scaling differs from pyedflib")
    except BaseException:
        rd.close()
        raise
    return rd


@dataclass
class _Stats:
    """What one reading pass learns about the channel: exact median and extremes, from the digital histogram."""

    median: float
    lo: float
    hi: float


def _channel_stats(rd: EdfRanges, block: int) -> _Stats:
    counts = np.zeros(1 << 16, np.int64)
    for a in range(0, rd.n, block):
        counts += np.bincount(rd.digital(a, a + block).astype(np.int64) + 32768, minlength=1 << 16)
    nz = np.flatnonzero(counts)
    c = np.cumsum(counts)
    n = int(c[-1])
    # np.median: the mean of the two middle values (the same pair whatever the sign of the scaling)
    da = int(np.searchsorted(c, (n - 1) // 2, side="right")) - 32768
    db = int(np.searchsorted(c, n // 2, side="right")) - 32768
    pa, pb = rd.physical(np.array([da, db]))
    med = float(np.mean(np.array([pa, pb]) if n % 2 == 0 else np.array([pa])))
    ends = rd.physical(np.array([nz[0] - 32768, nz[-1] - 32768]))
    return _Stats(med, float(ends.min()), float(ends.max()))


def _check_like_sources(st: _Stats, n: int, fs: float) -> None:
    """:func:`resp_sep.sources._check` and ``preprocess.check_channel``, from the stats: refusals go to the whole path."""
    if not (50.0 <= fs <= 100_000) or n < 10 * fs:
        raise NotBlockwise("rate or length")
    ptp = st.hi - st.lo
    if ptp == 0 or ptp <= 1e-12 * max(1.0, max(abs(st.lo), abs(st.hi))):
        raise NotBlockwise("flat")


# ---------------------------------------------------------------------------------------- resampling


class _Resampled:
    """``_resample(x, fs, fs_out)`` of :mod:`resp_sep.sources` (median removed, then
    ``scipy.signal.resample_poly``'s default zero-padded polyphase filter), by output ranges.

    Outputs ``[k0, k1)`` are computed by ``resample_poly`` on an input block that starts on a
    multiple of ``down`` (so its outputs fall on the whole signal's output grid) and reaches
    :attr:`reach` input samples beyond the filter's support on both sides: SciPy's loop forms each
    output from the same products in the same order as for the whole signal, so the values are
    equal bit for bit (tests/test_blockwise.py). At the signal's ends the block ends there too.
    """

    def __init__(self, rd: EdfRanges, n_in: int, fs: float, fs_out: float, median: float):
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

    def __call__(self, k0: int, k1: int) -> np.ndarray:
        from scipy.signal import resample_poly

        k0, k1 = max(0, k0), min(self.n_out, k1)
        s, e = self.inputs(k0, k1)
        x = self.rd(s, e) - self.median
        if self.identity:
            return x
        y = resample_poly(x, self.up, self.down)
        j = s * self.up // self.down
        return y[k0 - j:k1 - j]


def _blocks(n: int, block: int, margin: int, cancel=None):
    """``(core_start, core_end, read_start, read_end)`` covering ``[0, n)``; stops when ``cancel`` is set."""
    for c0 in range(0, n, block):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        c1 = min(n, c0 + block)
        yield c0, c1, max(0, c0 - margin), min(n, c1 + margin)


class _Spill:
    """A float64 series written block by block to an anonymous temporary file and read back by ranges."""

    def __init__(self):
        try:
            self.f = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise NotBlockwise(f"temporary file: {e}") from None
        self.n = 0

    def append(self, x: np.ndarray) -> None:
        try:
            self.f.seek(self.n * 8)
            np.ascontiguousarray(x, dtype=np.float64).tofile(self.f)
        except OSError as e:  # the temporary folder is full: the whole-array path needs no disk
            raise NotBlockwise(f"temporary file: {e}") from None
        self.n += x.size

    def __call__(self, a: int, b: int) -> np.ndarray:
        a, b = max(0, a), min(self.n, b)
        self.f.seek(a * 8)
        return np.fromfile(self.f, dtype=np.float64, count=max(0, b - a))

    def take(self, idx: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
        """Samples at ``idx`` (sorted rows of indices within the series), read one range at a time."""
        out = np.empty(idx.shape)
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
        self.f.close()


# ------------------------------------------------------------------------------------------- beats


def _edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rising and falling edges as NeuroKit2 finds them (index of the sample before the change)."""
    beg = np.flatnonzero(~mask[:-1] & mask[1:])
    end = np.flatnonzero(mask[:-1] & ~mask[1:])
    return beg, end


def _candidates(signal: np.ndarray, beg: np.ndarray, end_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each start, its end (the next falling edge; -1 if none) and the most prominent local maximum (-1 if none)."""
    j = np.searchsorted(end_all, beg, side="right")
    has = j < end_all.size
    end = np.where(has, end_all[np.minimum(j, end_all.size - 1)], -1) if end_all.size else np.full(beg.size, -1)
    peak = np.full(beg.size, -1)
    ok = np.flatnonzero(end >= 0)
    peak[ok] = most_prominent(signal, beg[ok], end[ok])
    return end, peak


#: segments longer than this (samples) go through scipy.signal.find_peaks one by one
LONG_SEGMENT = 512


def most_prominent(x: np.ndarray, beg: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The most prominent local maximum of each segment ``x[beg:end]`` (-1 where it has none).

    What NeuroKit2's detectors do per QRS complex or pulse wave - ``locmax, props =
    scipy.signal.find_peaks(x[b:e], prominence=(None, None))`` and ``b +
    locmax[argmax(props["prominences"])]`` - for all segments at once: the local maxima are
    SciPy's (plateaus strictly above both neighbours inside the segment, at their midpoint), each
    peak's prominence is its height minus the higher of the lowest points on either side before
    the segment's end or a higher sample (``x[peak] - max(left_min, right_min)``, SciPy's
    arithmetic), ties go to the first peak. Equal to the loop (tests/test_blockwise.py).
    """
    import scipy.signal

    beg, end = np.asarray(beg, dtype=np.intp), np.asarray(end, dtype=np.intp)
    out = np.full(beg.size, -1)
    if beg.size == 0:
        return out
    long = (end - beg) > LONG_SEGMENT
    for k in np.flatnonzero(long):
        locmax, props = scipy.signal.find_peaks(x[beg[k]:end[k]], prominence=(None, None))
        if locmax.size:
            out[k] = beg[k] + locmax[np.argmax(props["prominences"])]
    short = np.flatnonzero(~long & (end - beg >= 3))
    if short.size == 0:
        return out
    b, e = beg[short], end[short]
    # strict local-maximum plateaus of the whole signal between the first and last segment
    lo, hi = int(b.min()), int(e.max())
    seg = x[lo:hi]
    d = np.sign(np.diff(seg))
    nz = np.flatnonzero(d)  # positions whose next sample differs
    if nz.size < 2:
        return out
    # a plateau [l, r] is a peak when the change before it is up and the change after it is down
    up_then_down = (d[nz[:-1]] > 0) & (d[nz[1:]] < 0)
    left = nz[:-1][up_then_down] + 1 + lo  # first sample of the plateau
    right = nz[1:][up_then_down] + lo  # last sample of the plateau
    mid = (left + right) // 2
    # the peaks inside each segment: plateau and both its neighbours within [b, e)
    i0 = np.searchsorted(left, b + 1, side="left")
    i1 = np.searchsorted(right, e - 2, side="right")
    counts = np.maximum(i1 - i0, 0)
    if not counts.any():
        return out
    which = np.repeat(np.arange(short.size), counts)  # segment of each peak
    first = np.repeat(i0, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    keep = left[first] >= b[which] + 1  # (searchsorted gives it; right-bound checked by i1)
    which, first = which[keep], first[keep]
    p = mid[first]
    h = x[p]
    sb, se = b[which], e[which]
    width = int((se - sb).max())
    pos = sb[:, None] + np.arange(width)[None, :]  # (peaks, width): each peak's segment
    inside = pos < se[:, None]
    vals = x[np.minimum(pos, hi - 1)]
    higher = (vals > h[:, None]) & inside
    col = np.arange(width)[None, :]
    rel = (p - sb)[:, None]
    # left: back from the peak to the segment's start or a higher sample
    stop_l = np.where(higher & (col < rel), col, -1).max(axis=1)
    left_min = np.where((col > stop_l[:, None]) & (col <= rel), vals, np.inf).min(axis=1)
    # right: on from the peak to the segment's end or a higher sample
    stop_r = np.where(higher & (col > rel), col, width).min(axis=1)
    right_min = np.where((col >= rel) & (col < stop_r[:, None]) & inside, vals, np.inf).min(axis=1)
    prom = h - np.maximum(left_min, right_min)
    # per segment, the first peak of highest prominence
    order = np.lexsort((p, -prom, which))
    firsts = order[np.r_[True, which[order][1:] != which[order][:-1]]]
    out[short[which[firsts]]] = p[firsts]
    return out


def _chain(beg: np.ndarray, end: np.ndarray, peak: np.ndarray, min_len: float, min_delay: int) -> np.ndarray:
    """NeuroKit2's selection loop: candidates long enough, peaks more than ``min_delay`` after the last one (and 0)."""
    peaks = [0]
    for b, e, p in zip(beg.tolist(), end.tolist(), peak.tolist()):
        if e - b < min_len or p < 0:
            continue
        if p - peaks[-1] > min_delay:
            peaks.append(p)
    return np.asarray(peaks[1:]).astype(int)


@dataclass
class _Collected:
    beg: list
    end: list
    peak: list

    def arrays(self):
        return tuple(np.concatenate(v) if v else np.zeros(0, int) for v in (self.beg, self.end, self.peak))


def _keep_core(beg, end, peak, c0, c1, r0, n_total):
    """Candidates whose start lies in the core ``[c0, c1)`` (block coordinates from ``r0``), in recording samples."""
    g = beg + r0
    keep = (g >= c0) & (g < c1)
    if not (end[keep] >= 0).all() and c1 < n_total:
        raise NotBlockwise("a candidate runs beyond the margin")
    return g[keep], np.where(end[keep] >= 0, end[keep] + r0, -1), np.where(peak[keep] >= 0, peak[keep] + r0, -1)


@contextmanager
def _opened(rec, label: str, index: int):
    """``(fs, reader, spill file, channel statistics)`` of one channel, checked as the whole-array sources
    check it; the reader and the spill file are closed on the way out, whatever happens."""
    fs = float(rec.channel(label).fs)
    rd = _open_reader(rec, label, index)
    spill = None
    try:
        spill = _Spill()
        st = _channel_stats(rd, 1 << 18)
        _check_like_sources(st, rd.n, fs)
        yield fs, rd, spill, st
    finally:
        if spill is not None:
            spill.close()
        rd.close()


# -------------------------------------------------------------------------------------------- ECG


def _ecg(rec, label: str, index: int, names: list[str], path: str, block_s: float, margin_s: float,
         cancel=None):
    import neurokit2 as nk
    from scipy.ndimage import uniform_filter1d

    with _opened(rec, label, index) as (fs, rd, spill, st):
        n = rd.n
        n_grid = _n_out(n, fs)
        fs_c = min(fs, MAX_ECG_FS)
        clean_src = None
        if fs_c != fs:
            from fractions import Fraction

            clean_src = _Resampled(rd, n, fs, fs_c, st.median)
            fs_c = float(fs * Fraction(fs_c / fs).limit_denominator(1000))
            n_c = clean_src.n_out
        else:
            n_c = n
        base = _Resampled(rd, n, fs, GRID_FS, st.median) if "ecg_baseline" in names else None
        block, margin = max(1, round(block_s * fs_c)), round(margin_s * fs_c)
        smooth_k, avg_k = int(np.rint(0.1 * fs_c)), int(np.rint(0.75 * fs_c))
        got = _Collected([], [], [])
        ends_seen = []
        grid_parts = []
        for c0, c1, r0, r1 in _blocks(n_c, block, margin, cancel):
            rd.prefetch(*(clean_src.inputs(r0, r1) if clean_src is not None else (r0, r1)))
            x = clean_src(r0, r1) if clean_src is not None else rd(r0, r1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = np.asarray(nk.ecg_clean(x, sampling_rate=fs_c), dtype=float)
            spill.append(s[c0 - r0:c1 - r0])
            # NeuroKit2's `neurokit` QRS candidates (ecg_findpeaks._ecg_findpeaks_neurokit)
            smoothgrad = uniform_filter1d(np.abs(np.gradient(s)), smooth_k, mode="nearest")
            avggrad = uniform_filter1d(smoothgrad, avg_k, mode="nearest")
            beg, end_all = _edges(smoothgrad > 1.5 * avggrad)
            ends_seen.append(end_all[(end_all + r0 >= c0) & (end_all + r0 < c1)] + r0)
            end, peak = _candidates(s, beg, end_all)
            for lst, v in zip((got.beg, got.end, got.peak), _keep_core(beg, end, peak, c0, c1, r0, n_c)):
                lst.append(v)
            if base is not None:
                grid_parts.append(base(*_grid_range(c0, c1, n_c, base.n_out)))
        release_memory()  # the blocks' temporaries, before the per-beat arrays
        beg, end, peak = got.arrays()
        ends = np.concatenate(ends_seen) if ends_seen else np.zeros(0, int)
        if beg.size == 0:
            raise NotBlockwise("no QRS")
        ends = ends[ends > beg[0]]
        num = min(beg.size, ends.size)
        min_len = np.mean(ends[:num] - beg[:num]) * 0.4
        peaks = _chain(beg[:num], end[:num], peak[:num], min_len, int(np.rint(fs_c * 0.3)))
        peaks = np.asarray(fixpeaks_kubios(peaks, fs_c))  # = nk.signal_fixpeaks(..., method="Kubios"), faster
        r_peaks = np.round(peaks * fs / fs_c).astype(int)
        usable_min = n / fs / 60.0
        if not r_peaks.size >= max(3, 20.0 * usable_min):
            raise NotBlockwise("too few beats: the whole path tries another detector")
        ctx = _GridContext(np.zeros(0), fs, "ecg", path=path)
        ctx.set(n, n_grid, r_peaks=r_peaks, clean_ecg=(_SpilledClean(spill), fs_c))
        outputs, failures = _grid_sources(ctx, names, grid_parts if base is not None else None, n_grid)
        return outputs, failures, n / fs, r_peaks


def _grid_sources(ctx, names: list[str], baseline_parts: list | None, n_grid: int):
    """The requested sources of a block-wise channel: the beat-derived ones computed from ``ctx`` by the
    whole-array code, the baseline (``ctx.kind + "_baseline"``) assembled from its 10-Hz block parts
    (None: not requested); returns (outputs in the order of ``names``, failures)."""
    outputs, failures = compute_sources([m for m in names if m not in BASELINES], ctx)
    if baseline_parts is not None:
        name = f"{ctx.kind}_baseline"
        y = fit_length(np.concatenate(baseline_parts), n_grid)
        outputs[name] = SourceOutput(name, ctx.kind, _bandpass(y, GRID_FS))
    return {k: outputs[k] for k in names if k in outputs}, failures


def _grid_range(c0: int, c1: int, n_c: int, n_out: int) -> tuple[int, int]:
    """Outputs of a resampling to ``n_out`` samples that belong to the core ``[c0, c1)`` of ``n_c`` samples."""
    k0 = (c0 * n_out) // n_c
    k1 = n_out if c1 >= n_c else (c1 * n_out) // n_c
    return k0, k1


class _SpilledClean:
    """The cleaned ECG as ``sources._around_r`` indexes it (``clean[idx]``, ``clean.size``), read from the spill."""

    def __init__(self, spill: _Spill):
        self.spill = spill
        self.size = spill.n

    def __getitem__(self, idx):
        idx = np.asarray(idx)
        return self.spill.take(idx.reshape(idx.shape[0], -1)).reshape(idx.shape)


class _GridContext(SignalContext):
    """A :class:`SignalContext` without the channel's samples: beats and cleaned signal given, grid size set."""

    def set(self, n: int, n_grid: int, **cache) -> None:
        self._n, self._n_grid = n, n_grid
        self._cache.update(cache)
        self._cache["missing"] = np.zeros(n_grid, bool)

    @property
    def n_grid(self) -> int:
        return self._n_grid

    @property
    def duration_s(self) -> float:
        return self._n / self.fs


# -------------------------------------------------------------------------------------------- PPG


def _ppg(rec, label: str, index: int, names: list[str], path: str, block_s: float, margin_s: float,
         cancel=None):
    import neurokit2 as nk
    from scipy.ndimage import uniform_filter1d

    with _opened(rec, label, index) as (fs, rd, spill, st):
        n = rd.n
        n_grid = _n_out(n, fs)
        fs_p = min(fs, PPG_FS)
        src = _Resampled(rd, n, fs, fs_p, st.median)
        base = _Resampled(rd, n, fs, GRID_FS, st.median) if "ppg_baseline" in names else None
        n_p = src.n_out
        block, margin = max(1, round(block_s * fs_p)), round(margin_s * fs_p)
        grid_parts = []
        sq_sum = 0.0
        for c0, c1, r0, r1 in _blocks(n_p, block, margin, cancel):
            rd.prefetch(*src.inputs(r0, r1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = np.asarray(nk.ppg_clean(src(r0, r1), sampling_rate=fs_p), dtype=float)
            core = s[c0 - r0:c1 - r0]
            spill.append(core)
            sq_sum += float(np.sum(np.where(core > 0, core, 0.0) ** 2))
            if base is not None:
                grid_parts.append(base(*_grid_range(c0, c1, n_p, base.n_out)))
        offset = 0.02 * (sq_sum / n_p)
        # Elgendi's systolic peaks (ppg_findpeaks._ppg_findpeaks_elgendi), on the spilled cleaned PPG
        k_peak, k_beat = int(np.rint(0.111 * fs_p)), int(np.rint(0.667 * fs_p))
        got = _Collected([], [], [])
        ends_seen = []
        for c0, c1, r0, r1 in _blocks(n_p, block, margin, cancel):
            s = spill(r0, r1)
            sq = np.where(s > 0, s, 0.0) ** 2
            waves = uniform_filter1d(sq, k_peak, mode="nearest") > uniform_filter1d(sq, k_beat, mode="nearest") + offset
            beg, end_all = _edges(waves)
            ends_seen.append(end_all[(end_all + r0 >= c0) & (end_all + r0 < c1)] + r0)
            end, peak = _candidates(s, beg, end_all)
            for lst, v in zip((got.beg, got.end, got.peak), _keep_core(beg, end, peak, c0, c1, r0, n_p)):
                lst.append(v)
        beg, end, peak = got.arrays()
        ends = np.concatenate(ends_seen) if ends_seen else np.zeros(0, int)
        if beg.size == 0:
            raise NotBlockwise("no pulse")
        ends = ends[ends > beg[0]]
        num = min(beg.size, ends.size)
        peaks = _chain(beg[:num], end[:num], peak[:num], k_peak, int(np.rint(0.3 * fs_p)))
        usable_min = n / fs / 60.0
        if not peaks.size >= max(3, 20.0 * usable_min):
            raise NotBlockwise("too few pulses")
        release_memory()
        feet = _feet(spill, peaks, block)
        amp = spill.take(peaks[:, None])[:, 0] - feet
        ctx = _GridContext(np.zeros(0), fs, "ppg", path=path)
        ctx.set(n, n_grid, ppg_beats=(peaks / fs_p, amp))
        outputs, failures = _grid_sources(ctx, names, grid_parts if base is not None else None, n_grid)
        return outputs, failures, n / fs, (peaks / fs_p, amp)


def _feet(spill: _Spill, peaks: np.ndarray, block: int) -> np.ndarray:
    """``sources.ppg_beats``' feet: the minimum from the previous peak (or the start) up to each peak.

    Span ``i`` is ``[peaks[i-1], peaks[i])`` (from 0 for the first), the last one including its own
    peak sample (``np.minimum.reduceat`` as sources.ppg_beats uses it): consecutive spans cut at
    ``stops``. Each block of the spilled signal adds the minima of the span pieces it holds.
    """
    stops = peaks.copy()
    stops[-1] = peaks[-1] + 1
    feet = np.full(peaks.size, np.inf)
    end = int(stops[-1])
    for lo in range(0, min(spill.n, end), block):
        hi = min(spill.n, end, lo + block)
        i0 = int(np.searchsorted(stops, lo, side="right"))  # the span holding sample lo
        cuts = stops[(stops > lo) & (stops < hi)] - lo
        mins = np.minimum.reduceat(spill(lo, hi), np.concatenate(([0], cuts)))
        feet[i0:i0 + mins.size] = np.minimum(feet[i0:i0 + mins.size], mins)
    return feet


# ------------------------------------------------------------------------------------------ entry


def heuristic_sources(rec, kind: str, label: str, names: list[str], path: str, *, block_s: float = BLOCK_S,
                      margin_s: float = MARGIN_S, cancel=None):
    """The heuristic sources ``names`` of one channel, block by block (module docstring).

    Parameters
    ----------
    rec : Recording
    kind : {"ecg", "ppg"}
    label : str
        The channel serving ``kind``.
    names : list of str
        Heuristic sources of ``kind``.
    path : str
    block_s, margin_s : float
        Block core and margin (s).
    cancel : threading.Event, optional
        When set (by another thread), stop after the current block (:class:`Cancelled`).

    Returns
    -------
    (outputs, failures, duration_s, beats) or None
        ``outputs`` and ``failures`` as :func:`resp_sep.sources.compute_sources`; ``beats``: the R
        peaks (samples at the channel's rate) or the PPG beats (times in s, pulse amplitudes), as
        ``SignalContext.r_peaks()`` / ``ppg_beats()`` give them. ``None`` when the whole-array path
        must run.
    """
    ch = rec.channel(label)
    fn = _ecg if kind == "ecg" else _ppg
    try:
        return fn(rec, label, ch.index, names, path, block_s, margin_s, cancel)
    except NotBlockwise:
        return None
