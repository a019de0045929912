"""Heart beats of one ECG or PPG channel, block by block: cleaning, detection, correction, polarity.

The beats are found once per channel and shared by every source that needs them
(:mod:`resp_sep.sources`). The channel is never held whole: it is read block by block with
margins (:mod:`resp_sep.chunks`), cleaned, and written to a temporary file (:class:`~resp_sep.chunks.Spill`)
from which the per-beat values are read back.

ECG (:func:`ecg_beats`)
    NeuroKit2 ``ecg_clean`` (method ``neurokit``; :mod:`resp_sep.filters`) at no more than :data:`MAX_ECG_FS`, then its
    ``neurokit`` QRS detector, re-implemented around its only whole-recording quantity (QRS
    candidates shorter than 0.4 x the *recording's* mean candidate length are dropped):
    candidates (start, end and most prominent peak, NeuroKit2's own ``scipy.signal.find_peaks``
    arithmetic) are found block by block, the selection runs on the whole list. When it finds fewer
    than 20 beats per minute of usable signal (wide, slurred complexes: paced or ventricular
    rhythms), NeuroKit2's ``pantompkins1985`` detector is run the same way. The beats are then
    corrected for artefacts (Kubios: Lipponen & Tarvainen 2019, as ``nk.ecg_peaks(...,
    correct_artifacts=True)``, :mod:`resp_sep.kubios`). The same beats as NeuroKit2 on the whole
    signal (tests/test_beats.py).
Two sets of beats
    The corrected beats give the beat *intervals* (heart rate: RSA needs normal-to-normal
    intervals). The detected beats give the beat *amplitudes* (R, R-S, QRS area): correction moves
    beats next to an ectopic one to the middle of their neighbours and inserts missed ones, where
    the ECG is near its baseline (on the development ICU records 4 % of the corrected beats lay
    more than 20 ms from any detected R wave). Pan-Tompkins' beats, the peaks of a moving
    integral that trails the QRS complex, are moved to the highest sample of the 0.12 s before
    them. The beats Kubios marks as ectopic or artefacts are kept in :attr:`EcgBeats.artefact`.
ECG polarity
    A lead recorded the wrong way round (swapped electrodes, an inverted montage) puts the QRS
    complexes' largest deflection below the baseline; the detector would then pick a smaller
    positive wave and every amplitude source would read it. The cleaned ECG's signed extreme of
    each 2-s window (NeuroKit2's ``ecg_invert`` test, on non-overlapping windows) is collected; when
    their median is negative the channel is read negated. The decision is exactly antisymmetric
    (cleaning and resampling are linear, and the candidates of both signs are computed in the one
    pass), so an inverted recording gives the same beats and sources, bit for bit, as the upright one.
PPG (:func:`ppg_beats`)
    NeuroKit2 ``ppg_clean`` (method ``elgendi``; :mod:`resp_sep.filters`) at :data:`PPG_FS` and Elgendi's systolic-peak detector (``ppg_findpeaks``),
    whose threshold adds 2 % of the *recording's* mean squared PPG: the cleaned PPG is written
    block by block in a first pass, the peaks are found in a second. Pulse amplitude: peak minus
    the lowest point since the previous peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from resp_sep.chunks import BLOCK_S, MARGIN_S, Bridged, Resampled, Spill, blocks
from resp_sep.errors import InputError
from resp_sep.kubios import artefact_beats, fixpeaks_kubios
from resp_sep.parallel import ordered_map

#: ECG is analysed at no more than this rate (Hz): R-peaks need no finer timing for breathing.
MAX_ECG_FS = 500.0
#: PPG is analysed at this rate (Hz): its beats lie below 10 Hz.
PPG_FS = 100.0
#: fewest beats per minute of usable signal below which no beats were found.
MIN_BEATS_PER_MIN = 20.0
#: window (s) of the polarity test: at least one heart beat in each
POLARITY_WINDOW_S = 2.0


# ------------------------------------------------------------------------------------- candidates


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
    arithmetic), ties go to the first peak. Equal to the loop (tests/test_beats.py).
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
    # a candidate still open at the end of the margin (30 s of steep signal) is no QRS or pulse: as
    # NeuroKit2 skips a start without an end at the recording's end, it is skipped
    return g[keep], np.where(end[keep] >= 0, end[keep] + r0, -1), np.where(peak[keep] >= 0, peak[keep] + r0, -1)




def _candidate_arrays(got: _Collected, ends_seen: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    beg, end, peak = got.arrays()
    ends = np.concatenate(ends_seen) if ends_seen else np.zeros(0, int)
    return beg, end, peak, ends


def _select_neurokit(beg, end, peak, ends, fs_c: float) -> np.ndarray:
    """NeuroKit2's ``neurokit`` selection on the whole list of candidates: long enough, 0.3 s apart."""
    if beg.size == 0:
        return np.zeros(0, int)
    ends = ends[ends > beg[0]]
    num = min(beg.size, ends.size)
    if num == 0:
        return np.zeros(0, int)
    min_len = np.mean(ends[:num] - beg[:num]) * 0.4
    return _chain(beg[:num], end[:num], peak[:num], min_len, int(np.rint(fs_c * 0.3)))


# ----------------------------------------------------------------------------------------- Pan-Tompkins


def _pantompkins(spill: Spill, n: int, fs: float, sign: float, block: int, margin: int, cancel=None) -> np.ndarray:
    """NeuroKit2's ``pantompkins1985`` R peaks (``ecg_findpeaks``) of the spilled cleaned ECG, block by block.

    The moving-window integral's local maxima (``find_peaks(mwa, plateau_size=(1, 1))``) are found
    in each block's core with margins; the adaptive-threshold walk then runs over all of them, as
    NeuroKit2 runs it over the whole signal.
    """
    import scipy.signal
    from scipy.ndimage import uniform_filter1d

    w = int(0.12 * fs)
    n_d = n - 1  # the derivative's length
    pk, val = [], []
    for c0, c1, r0, r1 in blocks(n_d, block, margin, cancel):
        s = sign * spill(r0, min(n, r1 + 1))
        sq = np.diff(s) ** 2
        mwa = uniform_filter1d(sq, w, origin=(w - 1) // 2)
        if r0 == 0:  # the first samples: the mean of what there is so far
            head = min(w - 1, sq.size)
            mwa[:head] = np.cumsum(sq[:head]) / np.linspace(1, head, head)
        lo = int(0.2 * fs)
        if r0 < lo:
            mwa[:lo - r0] = 0
        p, _ = scipy.signal.find_peaks(mwa, plateau_size=(1, 1))
        p = p[(p + r0 >= c0) & (p + r0 < c1)]
        pk.append(p + r0)
        val.append(mwa[p])
    peaks = np.concatenate(pk) if pk else np.zeros(0, int)
    values = np.concatenate(val) if val else np.zeros(0)
    return _pantompkins_walk(peaks, values, fs)


def _pantompkins_walk(peaks: np.ndarray, values: np.ndarray, fs: float) -> np.ndarray:
    """NeuroKit2's ``_ecg_findpeaks_peakdetect`` over given local maxima and their values."""
    min_peak_distance = int(0.3 * fs)
    min_missed_distance = int(0.25 * fs)
    signal_peaks: list[int] = []
    spki = npki = 0.0
    last_peak, last_index = 0, -1
    pos = {int(p): i for i, p in enumerate(peaks)}
    for index, (peak, peak_value) in enumerate(zip(peaks.tolist(), values.tolist())):
        threshold_i1 = npki + 0.25 * (spki - npki)
        if peak_value > threshold_i1 and peak > last_peak + min_peak_distance:
            signal_peaks.append(peak)
            if len(signal_peaks) > 9:
                rr_ave = (signal_peaks[-2] - signal_peaks[-10]) // 8
                rr_missed = int(1.66 * rr_ave)
                if peak - last_peak > rr_missed:
                    missed = peaks[last_index + 1:index]
                    missed = missed[(missed > last_peak + min_missed_distance) & (missed < peak - min_missed_distance)]
                    threshold_i2 = 0.5 * threshold_i1
                    mv = values[[pos[int(m)] for m in missed]] if missed.size else np.zeros(0)
                    keep = mv > threshold_i2
                    missed, mv = missed[keep], mv[keep]
                    if missed.size > 0:
                        signal_peaks[-1] = int(missed[np.argmax(mv)])
                        signal_peaks.append(peak)
            last_peak = peak
            last_index = index
            spki = 0.125 * peak_value + 0.875 * spki
        else:
            npki = 0.125 * peak_value + 0.875 * npki
    return np.asarray(signal_peaks, dtype=int)


# ------------------------------------------------------------------------------------------- ECG


@dataclass
class EcgBeats:
    """The beats of one ECG channel and what was learnt finding them.

    Attributes
    ----------
    r_peaks : numpy.ndarray of int, shape (n_beats,)
        R peaks (samples at the channel's rate), artefact-corrected (Kubios): the beat *intervals*
        (heart rate, RSA). Correction moves ectopic beats and inserts missed ones where there is
        no R wave.
    detected : numpy.ndarray of int, shape (n_detected,)
        The R peaks as detected, before correction (samples at the channel's rate): where the R
        waves are, and where the beat *amplitudes* are read (:meth:`amplitude_peaks`).
    artefact : numpy.ndarray of bool, shape (n_detected,)
        Detected beats Kubios' classification marks as ectopic, extra or with a long/short
        interval (:func:`resp_sep.kubios.artefact_beats`). They are *kept* in the amplitudes:
        leaving them out was no better on the development recordings (docs/method.md).
    clean : Spill
        The cleaned ECG at ``fs_clean``, as read for per-beat values (negated when ``inverted``).
    fs_clean : float
        Its rate (Hz).
    inverted : bool
        The channel was read negated (polarity test).
    detector : str
        ``"neurokit"`` or ``"pantompkins1985"``.
    baseline : numpy.ndarray or None
        The channel resampled to the source grid (median removed, negated when ``inverted``), when asked.
    """

    r_peaks: np.ndarray
    clean: object
    fs_clean: float
    inverted: bool
    detector: str
    baseline: np.ndarray | None = None
    notes: list = field(default_factory=list)
    detected: np.ndarray | None = None
    artefact: np.ndarray | None = None

    def amplitude_peaks(self) -> np.ndarray:
        """The detected R peaks (samples at the channel's rate): where beat amplitudes are read."""
        return self.r_peaks if self.detected is None else self.detected


class _SignedSpill:
    """A spill read with a sign (the polarity decided after it was written)."""

    def __init__(self, spill: Spill, sign: float):
        self.spill, self.sign, self.n = spill, sign, spill.n

    def __call__(self, a: int, b: int) -> np.ndarray:
        return self.sign * self.spill(a, b)

    def take(self, idx: np.ndarray) -> np.ndarray:
        return self.sign * self.spill.take(idx)

    def close(self) -> None:
        self.spill.close()


def _corrected(peaks: np.ndarray, fs: float) -> np.ndarray:
    """Kubios artefact correction (= ``nk.signal_fixpeaks(peaks, fs, method="Kubios")``, faster).

    Too few beats to correct (NeuroKit2 raises on them) count as none, as in ``nk.ecg_peaks``' callers.
    """
    try:
        return np.asarray(fixpeaks_kubios(peaks, fs)) if peaks.size else peaks
    except Exception:  # noqa: BLE001 - a handful of beats: nothing to correct, and not enough anyway
        return np.zeros(0, int)


def enough_beats(n_beats: int, usable_s: float) -> bool:
    """At least :data:`MIN_BEATS_PER_MIN` beats per minute of usable signal, and at least 3."""
    return n_beats >= max(3, MIN_BEATS_PER_MIN * usable_s / 60.0)


def ecg_beats(ch, st, *, path: str | None = None, grid_fs: float | None = None, block_s: float = BLOCK_S,
              margin_s: float = MARGIN_S, cancel=None, tick=None) -> EcgBeats:
    """R peaks of one checked ECG channel, in bounded memory (module docstring).

    Parameters
    ----------
    ch : resp_sep.io.Channel
    st : resp_sep.chunks.ChannelStats
        Its :func:`~resp_sep.chunks.scan`.
    grid_fs : float, optional
        Also resample the channel to this rate (the baseline-wander source), in the same pass.
    block_s, margin_s : float
        Block core and margin (s).
    cancel : threading.Event, optional
        Stop after the current block when set.
    tick : callable, optional
        ``tick(fraction)`` after each block: the share of this channel's work done.

    Raises
    ------
    InputError
        No heart beats found.
    """
    from scipy.ndimage import uniform_filter1d

    from resp_sep.filters import ecg_clean

    fs, n = st.fs, st.n
    rd = Bridged(ch, st)
    fs_c = min(fs, MAX_ECG_FS)
    clean_src = None
    if fs_c != fs:
        clean_src = Resampled(rd, n, fs, fs_c, st.median)
        fs_c = float(fs * Fraction(fs_c / fs).limit_denominator(1000))
        n_c = clean_src.n_out
    else:
        n_c = n
    base = Resampled(rd, n, fs, grid_fs, st.median) if grid_fs else None
    block, margin = max(1, round(block_s * fs_c)), round(margin_s * fs_c)
    smooth_k, avg_k = int(np.rint(0.1 * fs_c)), int(np.rint(0.75 * fs_c))
    win = max(1, int(POLARITY_WINDOW_S * fs_c))
    got = {+1: _Collected([], [], []), -1: _Collected([], [], [])}
    ends_seen: list = []
    extremes: list = []
    grid_parts: list = []

    def one_block(blk):
        """Everything one block gives, from its own read of the channel (blocks run on several threads)."""
        c0, c1, r0, r1 = blk
        s_in, e_in = clean_src.inputs(r0, r1) if clean_src is not None else (r0, r1)
        gk = None
        if base is not None:
            gk = _grid_range(c0, c1, n_c, base.n_out)
            bs, be = base.inputs(*gk)
            s_in, e_in = min(s_in, bs), max(e_in, be)
        raw = rd(s_in, e_in)  # each sample the block needs, read once

        def read(a: int, b: int) -> np.ndarray:
            return raw[a - s_in:b - s_in]

        grid = base(*gk, read) if base is not None else None
        x = clean_src(r0, r1, read) if clean_src is not None else read(r0, r1)
        del raw  # (blocks run two at a time: each holds only what it still needs)
        s = ecg_clean(x, fs_c)
        del x
        # NeuroKit2's `neurokit` QRS candidates (ecg_findpeaks._ecg_findpeaks_neurokit): the
        # gradient's magnitude does not depend on the sign, the most prominent peak does
        smoothgrad = uniform_filter1d(np.abs(np.gradient(s)), smooth_k, mode="nearest")
        avggrad = uniform_filter1d(smoothgrad, avg_k, mode="nearest")
        beg, end_all = _edges(smoothgrad > 1.5 * avggrad)
        del smoothgrad, avggrad
        ends = end_all[(end_all + r0 >= c0) & (end_all + r0 < c1)] + r0
        cands = {}
        for sign in (+1, -1):
            end, peak = _candidates(sign * s, beg, end_all)
            cands[sign] = _keep_core(beg, end, peak, c0, c1, r0, n_c)
        # polarity: the signed extreme of every whole 2-s window starting in the core
        w0 = -(-c0 // win) * win
        w1 = min(c1, n_c - win + 1)
        ext = np.zeros(0)
        if w1 > w0:
            k = (w1 - w0 + win - 1) // win
            rows = s[w0 - r0:w0 - r0 + k * win].reshape(k, win)
            ext = rows[np.arange(k), np.argmax(np.abs(rows), axis=1)]
        return s[c0 - r0:c1 - r0].copy(), cands, ends, ext, grid

    spill = Spill()
    try:
        n_blocks = -(-n_c // block)
        for i, (core, cands, ends, ext, grid) in enumerate(ordered_map(one_block, blocks(n_c, block, margin,
                                                                                          cancel))):
            spill.append(core)
            ends_seen.append(ends)
            for sign in (+1, -1):
                for lst, v in zip((got[sign].beg, got[sign].end, got[sign].peak), cands[sign]):
                    lst.append(v)
            extremes.append(ext)
            if grid is not None:
                grid_parts.append(grid)
            if tick is not None:
                tick((i + 1) / n_blocks)
        ext = np.concatenate(extremes) if extremes else np.zeros(0)
        sign = -1 if (ext.size and np.median(ext) < 0) else +1
        beg, end, peak, ends = _candidate_arrays(got[sign], ends_seen)
        # nk.ecg_peaks(..., correct_artifacts=True) with each detector in turn, until one finds enough beats
        usable_s = st.usable_s
        found, detector = _select_neurokit(beg, end, peak, ends, fs_c), "neurokit"
        peaks = _corrected(found, fs_c)
        if not enough_beats(peaks.size, usable_s):
            detector = "pantompkins1985"
            found = _pantompkins(spill, n_c, fs_c, float(sign), block, margin, cancel)
            peaks = _corrected(found, fs_c)
        r_peaks = np.round(peaks * fs / fs_c).astype(int)
        # the R waves themselves, for the beat amplitudes: every detected beat (Kubios' marks kept beside them)
        artefact = artefact_beats(found, fs_c)
        if detector == "pantompkins1985":
            found = _at_r_waves(spill, np.asarray(found), fs_c, float(sign))
        detected = np.round(np.asarray(found) * fs / fs_c).astype(int)
        if not enough_beats(r_peaks.size, usable_s):
            raise InputError(f"no ECG R-peaks found ({r_peaks.size} in {usable_s / 60:.1f} min of signal): "
                             "is this channel the right kind?", path)
    except BaseException:
        spill.close()
        raise
    baseline = None
    if base is not None:
        baseline = np.concatenate(grid_parts) if grid_parts else np.zeros(0)
        if sign < 0:
            baseline = -baseline
    notes = [spill.note] if spill.note else []
    return EcgBeats(r_peaks, _SignedSpill(spill, float(sign)), fs_c, sign < 0, detector, baseline, notes,
                    detected, artefact)


#: Pan-Tompkins' beats are the peaks of a 0.12-s trailing moving integral: its R wave lies this long (s) before
PT_WINDOW_S = 0.12


def _at_r_waves(spill: Spill, peaks: np.ndarray, fs: float, sign: float) -> np.ndarray:
    """Pan-Tompkins' beats moved to their R waves: the highest sample of the (signed) cleaned ECG in the
    :data:`PT_WINDOW_S` before each (the moving integral peaks after the QRS complex, near the baseline)."""
    if not peaks.size:
        return peaks
    offs = np.arange(-int(round(PT_WINDOW_S * fs)), 1)
    rows = np.clip(peaks[:, None] + offs[None, :], 0, spill.n - 1)
    return rows[np.arange(peaks.size), np.argmax(sign * spill.take(rows), axis=1)]


def _grid_range(c0: int, c1: int, n_c: int, n_out: int) -> tuple[int, int]:
    """Outputs of a resampling to ``n_out`` samples that belong to the core ``[c0, c1)`` of ``n_c`` samples."""
    k0 = (c0 * n_out) // n_c
    k1 = n_out if c1 >= n_c else (c1 * n_out) // n_c
    return k0, k1


# ------------------------------------------------------------------------------------------- PPG


@dataclass
class PpgBeats:
    """The pulses of one PPG channel.

    Attributes
    ----------
    times_s : numpy.ndarray, shape (n_beats,)
        Systolic peak times (s).
    amplitude : numpy.ndarray, shape (n_beats,)
        Pulse amplitude: peak minus the lowest point since the previous peak (cleaned PPG units).
    baseline : numpy.ndarray or None
        The channel resampled to the source grid (median removed), when asked.
    """

    times_s: np.ndarray
    amplitude: np.ndarray
    baseline: np.ndarray | None = None
    notes: list = field(default_factory=list)


def ppg_beats(ch, st, *, path: str | None = None, grid_fs: float | None = None, block_s: float = BLOCK_S,
              margin_s: float = MARGIN_S, cancel=None, tick=None) -> PpgBeats:
    """Systolic peaks and pulse amplitudes of one checked PPG channel, in bounded memory (module docstring).

    Parameters as :func:`ecg_beats`.

    Raises
    ------
    InputError
        No pulses found.
    """
    from scipy.ndimage import uniform_filter1d

    from resp_sep.filters import ppg_clean

    fs, n = st.fs, st.n
    rd = Bridged(ch, st)
    fs_p = min(fs, PPG_FS)
    src = Resampled(rd, n, fs, fs_p, st.median)
    base = Resampled(rd, n, fs, grid_fs, st.median) if grid_fs else None
    n_p = src.n_out
    block, margin = max(1, round(block_s * fs_p)), round(margin_s * fs_p)
    grid_parts: list = []
    sq_sum = 0.0
    spill = Spill()
    try:
        n_blocks = -(-n_p // block)
        for i, (c0, c1, r0, r1) in enumerate(blocks(n_p, block, margin, cancel)):
            rd.prefetch(*src.inputs(r0, r1))
            s = ppg_clean(src(r0, r1), fs_p)
            core = s[c0 - r0:c1 - r0]
            spill.append(core)
            sq_sum += float(np.sum(np.where(core > 0, core, 0.0) ** 2))
            if base is not None:
                grid_parts.append(base(*_grid_range(c0, c1, n_p, base.n_out)))
            if tick is not None:
                tick(0.8 * (i + 1) / n_blocks)
        offset = 0.02 * (sq_sum / n_p)
        # Elgendi's systolic peaks (ppg_findpeaks._ppg_findpeaks_elgendi), on the spilled cleaned PPG
        k_peak, k_beat = int(np.rint(0.111 * fs_p)), int(np.rint(0.667 * fs_p))
        got = _Collected([], [], [])
        ends_seen = []
        for c0, c1, r0, r1 in blocks(n_p, block, margin, cancel):
            s = spill(r0, r1)
            sq = np.where(s > 0, s, 0.0) ** 2
            waves = uniform_filter1d(sq, k_peak, mode="nearest") > uniform_filter1d(sq, k_beat, mode="nearest") + offset
            beg, end_all = _edges(waves)
            ends_seen.append(end_all[(end_all + r0 >= c0) & (end_all + r0 < c1)] + r0)
            end, peak = _candidates(s, beg, end_all)
            for lst, v in zip((got.beg, got.end, got.peak), _keep_core(beg, end, peak, c0, c1, r0, n_p)):
                lst.append(v)
        beg, end, peak, ends = _candidate_arrays(got, ends_seen)
        peaks = np.zeros(0, int)
        if beg.size:
            ends = ends[ends > beg[0]]
            num = min(beg.size, ends.size)
            peaks = _chain(beg[:num], end[:num], peak[:num], k_peak, int(np.rint(0.3 * fs_p)))
        if not enough_beats(peaks.size, st.usable_s):
            raise InputError(f"no PPG pulses found ({peaks.size} in {st.usable_s / 60:.1f} min of signal): "
                             "is this channel the right kind?", path)
        feet = _feet(spill, peaks, block)
        amp = spill.take(peaks[:, None])[:, 0] - feet
        if tick is not None:
            tick(1.0)
    finally:
        spill.close()
    notes = [spill.note] if spill.note else []
    baseline = np.concatenate(grid_parts) if base is not None and grid_parts else None
    return PpgBeats(peaks / fs_p, amp, baseline, notes)


def _feet(spill: Spill, peaks: np.ndarray, block: int) -> np.ndarray:
    """The minimum from the previous peak (or the start) up to each peak.

    Span ``i`` is ``[peaks[i-1], peaks[i])`` (from 0 for the first), the last one including its own
    peak sample (``np.minimum.reduceat`` as NeuroKit2-based code computes it): consecutive spans cut
    at ``stops``. Each block of the spilled signal adds the minima of the span pieces it holds.
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
