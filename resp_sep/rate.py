"""Breathing rate per window: one definition for estimated respiration, reference sensors and annotations.

The same code scores every source, so that an estimate and its reference differ only in their input:
:func:`breathing_rate` takes a waveform (an extracted breathing signal, an ECG/PPG surrogate from
:mod:`resp_sep.baselines`, or a reference belt, impedance or thermistor channel) and
:func:`rate_from_breath_times` takes breath events (e.g. hand-marked EDF+ ``end-inspiration``
annotations). Both end in the same window scorer.

Definitions
-----------
Windows
    :func:`window_grid`: full windows only, ``[start_s + k * step_s, start_s + k * step_s + window_s)``
    for every ``k >= 0`` whose window ends within the signal; the tail shorter than a window is not
    scored (a rate over a few seconds is not comparable with one over a minute).
Breath
    One cycle between two consecutive breath events. For a waveform the events are inhalation onsets
    (troughs) found by NeuroKit2's ``khodadad2018`` detector (``rsp_findpeaks``, the core of
    ``rsp_peaks``) after its band-pass, narrowed to :data:`CLEAN_BAND`, on the signal resampled to
    :data:`INTERNAL_FS`. Before that, spikes are bridged (short ones stay usable; runs longer than
    :data:`SPIKE_MAX_S` are artefact bursts) and constant stretches are marked flat. A cycle counts
    only when it lasts :data:`MIN_BREATH_S` to :data:`MAX_BREATH_S` (60 to 4 breaths/min), touches
    no unusable sample (missing, flat or burst) and its amplitude is at least
    :data:`MIN_REL_AMPLITUDE` of the recording's median breath: a longer gap is a pause, not a slow
    breath, and a ripple is not a breath.
Window rate
    ``bpm = 60 / mean(d)``, where ``d`` are the durations (s) of the counted cycles that start and
    end inside the window and lie within :data:`REGULAR_RANGE` (0.6-1.6) times their median: a
    trimmed mean. Trimming keeps a missed breath (a double-length cycle) or an extra one (two short
    cycles) from moving the rate by a breath per minute, as a plain mean or a count would; the mean
    of the rest is steadier than the median, which jumps between single cycles. (On MARSH this
    choice gave the lowest errors of median, mean and trimmed mean for references and surrogates
    alike.) Sign does not matter: troughs of ``-x`` are the peaks of ``x``, as far apart as its troughs.
Flags (``bpm`` is NaN unless the flag is ``"ok"`` or ``"partial"``)
    More than half of the window unusable: ``"nan"`` (mostly missing), ``"flat"`` (mostly constant)
    or ``"poor_quality"`` (mostly artefact bursts). Otherwise ``"too_few_breaths"``: fewer than
    ``min_breaths`` counted cycles, or they cover less than :data:`MIN_COVERAGE` of the usable time
    less two cycles (the edges always lose up to two), i.e. a pause; ``"poor_quality"``: the cycles
    are irregular (fewer than half within :data:`REGULAR_RANGE` of the median), their median
    amplitude is below :data:`MIN_REL_AMPLITUDE` of the recording's, or the rate is outside 4-60
    breaths/min; ``"partial"``: scored, but more than :data:`PARTIAL_MIN` of the window was unusable
    (the rate comes from the usable part); ``"ok"``: scored.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from resp_sep.errors import InputError

#: rate (Hz) at which waveforms are analysed: breathing lies below 1 Hz, so 25 Hz keeps the shape of
#: every breath and makes an 8-hour night 720 000 samples.
INTERNAL_FS = 25.0
#: band-pass (Hz) before breath detection: 3-60 breaths/min (NeuroKit2's khodadad2018 uses 0.05-3 Hz).
CLEAN_BAND = (0.05, 1.0)
#: usable stretches shorter than this (s) are not searched for breaths.
MIN_STRETCH_S = 10.0
#: shortest and longest breath cycle counted (s): 60 and 4 breaths/min.
MIN_BREATH_S, MAX_BREATH_S = 1.0, 15.0
#: plausible window rates (breaths/min).
MIN_BPM, MAX_BPM = 4.0, 60.0
#: a cycle is "regular" when its duration is within this factor range of the window's median cycle.
REGULAR_RANGE = (0.6, 1.6)
#: cycles smaller than this fraction of the recording's median breath are not counted, and windows
#: whose median counted breath is still below it are poor quality.
MIN_REL_AMPLITUDE = 0.2
#: blocks (s) whose peak-to-peak is below FLAT_REL of the median block's are flat (sensor off/saturated).
FLAT_BLOCK_S, FLAT_REL = 4.0, 1e-3
#: unusable samples are widened by this margin (s) on each side: the filters ring at their edges.
BAD_MARGIN_S = 0.5
#: spikes: samples further than SPIKE_K typical breath swings (median peak-to-peak over SWING_BLOCK_S
#: blocks) from a running median of SPIKE_WIN_S seconds.
SPIKE_K, SPIKE_WIN_S, SWING_BLOCK_S = 2.0, 2.0, 10.0
#: bridged spike runs longer than this (s) are artefact bursts: unusable, not bridged breaths.
SPIKE_MAX_S = 2.0

#: windows whose counted cycles cover less of the usable time (less two cycles) are "too_few_breaths".
MIN_COVERAGE = 0.75
#: a scored window with more than this fraction unusable is flagged "partial".
PARTIAL_MIN = 0.02

FLAGS = ("ok", "partial", "too_few_breaths", "poor_quality", "flat", "nan")
KINDS = ("waveform", "reference")


@dataclass
class RateWindows:
    """Breathing rate per window.

    Attributes
    ----------
    start_s, end_s : numpy.ndarray, shape (n_windows,)
        Window bounds in seconds (same clock as the input's ``start_s``).
    bpm : numpy.ndarray, shape (n_windows,)
        Breathing rate in breaths/min; NaN where the window is not scored.
    n_breaths : numpy.ndarray of int, shape (n_windows,)
        Breath cycles counted in the window (see the module definitions).
    quality : numpy.ndarray, shape (n_windows,)
        0..1, the weakest of: usable-time coverage by breaths, regularity, relative amplitude.
    flag : numpy.ndarray of str, shape (n_windows,)
        One of :data:`FLAGS`.
    kind : str
        What was scored: ``"waveform"``, ``"reference"`` or ``"events"``.
    breath_times_s : numpy.ndarray, shape (n_events,)
        The breath events used (s), for plotting and checking: inhalation onsets of a waveform.
    breath_amplitude : numpy.ndarray, shape (n_events,)
        Amplitude of the breath starting at each event (onset to the next peak of the band-passed
        waveform, in the waveform's units); NaN for events without a waveform.
    breath_counted : numpy.ndarray of bool, shape (max(n_events - 1, 0),)
        Whether the cycle from event ``k`` to event ``k + 1`` counts as a breath (the module's
        definition: its length, its amplitude, no unusable sample).
    """

    start_s: np.ndarray
    end_s: np.ndarray
    bpm: np.ndarray
    n_breaths: np.ndarray
    quality: np.ndarray
    flag: np.ndarray
    kind: str = "waveform"
    breath_times_s: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    breath_amplitude: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    breath_counted: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    def __len__(self) -> int:
        return len(self.start_s)

    @property
    def scored(self) -> np.ndarray:
        """Boolean mask, shape (n_windows,): windows with a rate."""
        return np.isfinite(self.bpm)


def window_grid(duration_s: float, window_s: float = 60.0, step_s: float | None = None,
                start_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The analysis windows: full windows only, the last one ending at or before the signal's end.

    Parameters
    ----------
    duration_s : float
        Signal duration (s).
    window_s : float
        Window length (s).
    step_s : float, optional
        Hop between window starts (s); defaults to ``window_s`` (no overlap).
    start_s : float
        Time of the first sample (s); windows start here.

    Returns
    -------
    start, end : numpy.ndarray, shape (n_windows,)
        Window bounds (s); ``n_windows = floor((duration_s - window_s) / step_s) + 1``, or 0 when the
        signal is shorter than one window.
    """
    step_s = window_s if step_s is None else step_s
    if not (window_s > 0 and step_s > 0):
        raise ValueError(f"window_s and step_s must be positive (got {window_s}, {step_s})")
    # the tolerance keeps a 900-s signal at 60-s windows at 15 windows despite float rounding
    n = int(np.floor((duration_s - window_s) / step_s + 1e-9)) + 1 if duration_s >= window_s - 1e-9 else 0
    start = start_s + step_s * np.arange(n, dtype=float)
    return start, start + window_s


def breathing_rate(signal: np.ndarray, fs: float, *, window_s: float = 60.0, step_s: float | None = None,
                   start_s: float = 0.0, min_breaths: int = 3, kind: str = "waveform",
                   duration_s: float | None = None) -> RateWindows:
    """Breathing rate per window from a respiration waveform (estimate or reference alike).

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_samples,)
        Respiration waveform, any unit and sign; NaN marks missing samples.
    fs : float
        Sampling rate (Hz).
    window_s, step_s : float
        Window length and hop (s); see :func:`window_grid`.
    start_s : float
        Time of the first sample (s); window and breath times are on this clock.
    min_breaths : int
        Fewest breath cycles for a window to be scored.
    kind : {"waveform", "reference"}
        Recorded in the result for reports; the processing is identical by design, so that an
        estimate and its reference are scored the same way.
    duration_s : float, optional
        Duration (s) the windows cover (default: the signal's, ``n_samples / fs``). Give the
        recording's duration to put the windows on the recording's epochs (0, 30, 60 ... s for
        ``window_s=30``) whatever the waveform's last sample: windows past the recording's end are
        not made, and time past the waveform's end counts as missing.

    Returns
    -------
    RateWindows
        See the module docstring for the definition of a window's rate and the flags.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (got {kind!r})")
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    if not (np.isfinite(fs) and fs > 0):
        raise InputError(f"invalid sampling rate {fs} Hz")
    if x.size == 0:
        raise InputError("respiration signal has no samples")
    starts, ends = window_grid(x.size / fs if duration_s is None else float(duration_s), window_s, step_s, start_s)
    y, fs_int, missing = _to_internal_rate(x, fs)
    y, burst = _remove_spikes(y, fs_int, missing)
    flat = _flat_mask(y, fs_int, missing)
    bad = _widen(missing | flat | burst, round(BAD_MARGIN_S * fs_int))
    onsets, amplitudes = _detect_breaths(y, fs_int, bad)
    cycles_ok = _cycles_clear_of(onsets, bad)
    past = 0 if duration_s is None else int(round(float(duration_s) * fs_int)) - missing.size
    if past > 0:  # windows reaching past the waveform: the time after its last sample is missing
        missing, flat, burst = (np.concatenate([m, np.full(past, v)]) for m, v in
                                ((missing, True), (flat, False), (burst, False)))
    unusable = _unusable_fractions(starts - start_s, ends - start_s, fs_int, missing, flat, burst)
    return _score(onsets / fs_int + start_s, cycles_ok, amplitudes, starts, ends, unusable,
                  min_breaths=min_breaths, kind=kind)


def rate_from_breath_times(times_s: np.ndarray, duration_s: float, window_s: float = 60.0,
                           step_s: float | None = None, *, start_s: float = 0.0,
                           min_breaths: int = 3) -> RateWindows:
    """Breathing rate per window from breath event times, on the grid of :func:`breathing_rate`.

    Parameters
    ----------
    times_s : numpy.ndarray, shape (n_events,)
        One time (s) per breath, always at the same phase (e.g. every end-inspiration); any order,
        duplicates are dropped.
    duration_s : float
        Duration (s) of the recording the events belong to.
    window_s, step_s : float
        Window length and hop (s); see :func:`window_grid`.
    start_s : float
        Time (s) at which the recording (and the first window) starts.
    min_breaths : int
        Fewest breath cycles for a window to be scored.

    Returns
    -------
    RateWindows
        Same windows and rule as :func:`breathing_rate` (there are no amplitudes: that check is
        skipped; the whole window counts as usable).
    """
    t = np.unique(np.asarray(times_s, dtype=np.float64).reshape(-1))
    t = t[np.isfinite(t)]
    starts, ends = window_grid(duration_s, window_s, step_s, start_s)
    return _score(t, np.ones(max(t.size - 1, 0), bool), None, starts, ends, np.zeros((starts.size, 3)),
                  min_breaths=min_breaths, kind="events")


def paired_abs_error(estimate: RateWindows, reference: RateWindows) -> np.ndarray:
    """Absolute rate errors (breaths/min) over the windows that both score.

    Parameters
    ----------
    estimate, reference : RateWindows
        Rates on the same window grid.

    Returns
    -------
    numpy.ndarray, shape (n_paired,)
    """
    n = min(len(estimate), len(reference))
    if not np.allclose(estimate.start_s[:n], reference.start_s[:n]):
        raise ValueError("the estimate and the reference are not on the same window grid")
    both = estimate.scored[:n] & reference.scored[:n]
    return np.abs(estimate.bpm[:n][both] - reference.bpm[:n][both])


# --- waveform preparation ---------------------------------------------------------------------

def _to_internal_rate(x: np.ndarray, fs: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Resample to about INTERNAL_FS; NaNs are bridged for the filters and returned as a mask."""
    missing = ~np.isfinite(x)
    if missing.all():
        x = np.zeros_like(x)
    elif missing.any():
        idx = np.flatnonzero(~missing)
        x = x.copy()
        x[missing] = np.interp(np.flatnonzero(missing), idx, x[idx])
    ratio = Fraction(INTERNAL_FS / fs).limit_denominator(1000)
    fs_int = fs * ratio.numerator / ratio.denominator
    offset = np.median(x)  # resample_poly pads with zeros: remove the level so the ends do not ring
    from scipy.signal import resample_poly

    y = x - offset
    if ratio != 1:
        y = resample_poly(y, ratio.numerator, ratio.denominator)
    return y, fs_int, _resample_mask(missing, fs, fs_int, y.size)


def _resample_mask(mask: np.ndarray, fs: float, fs_out: float, n_out: int) -> np.ndarray:
    """A sample mask at another rate: an output sample is set when its span touches a set input one."""
    out = np.zeros(n_out, bool)
    if not mask.any():
        return out
    first, last = _runs(mask)
    r = fs_out / fs
    i0 = np.clip(np.floor(first * r).astype(int), 0, n_out)
    i1 = np.clip(np.ceil(last * r).astype(int) + 1, 0, n_out)
    return _fill_runs(n_out, i0, i1)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) indices of the runs of True."""
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


#: samples of a mask made at once by _fill_runs (bounds its temporaries: 2 MB of counts)
FILL_CHUNK = 1 << 18


def _fill_runs(n: int, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Boolean array of length n set on [first[i], last[i]) for every i.

    Sample ``i`` is set when more runs start at or before it than end at or before it (the running
    count of starts minus ends); counted block by block from the sorted starts and ends, so no
    grid-length integer array is made (a 48-h night at 25 Hz: 35 MB each).
    """
    out = np.zeros(n, bool)
    if not len(first):
        return out
    starts = np.sort(np.asarray(first, dtype=np.int64))
    ends = np.sort(np.asarray(last, dtype=np.int64))
    lo = max(0, int(starts[0]))
    for a in range(lo - lo % FILL_CHUNK, n, FILL_CHUNK):
        i = np.arange(a, min(n, a + FILL_CHUNK))
        out[a:a + i.size] = np.searchsorted(starts, i, side="right") > np.searchsorted(ends, i, side="right")
    return out


def _widen(mask: np.ndarray, margin: int) -> np.ndarray:
    """Grow every run of True by ``margin`` samples on each side."""
    if margin <= 0 or not mask.any():
        return mask
    first, last = _runs(mask)
    return _fill_runs(mask.size, np.maximum(first - margin, 0), np.minimum(last + margin, mask.size))


def _remove_spikes(y: np.ndarray, fs: float, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bridge spikes, which the band-pass would turn into ringing taken for breaths.

    A spike is a sample further than SPIKE_K typical breath swings (the median peak-to-peak of
    SWING_BLOCK_S blocks) from a running median of SPIKE_WIN_S: a breath, even a sharp thermistor
    edge or a sigh, moves the signal by about one swing, so only artefacts get that far. Each spike
    is widened by BAD_MARGIN_S (the resampling filter has smeared it) and bridged linearly.

    Returns
    -------
    y : numpy.ndarray
        The signal with spikes bridged.
    burst : numpy.ndarray of bool
        Samples of bridged runs longer than SPIKE_MAX_S: artefact bursts, not usable. Shorter runs
        are usable once bridged (a breath keeps its cycle).
    """
    from scipy.ndimage import median_filter

    no_burst = np.zeros(y.size, bool)
    swing = _median_block_ptp(y, fs, missing, SWING_BLOCK_S)
    if not swing > 0:
        return y, no_burst
    size = max(3, round(SPIKE_WIN_S * fs) | 1)
    resid = median_filter(y, size=size, mode="nearest")
    np.subtract(y, resid, out=resid)  # y - running median, in place (one grid-length array fewer)
    np.abs(resid, out=resid)
    far = resid > SPIKE_K * swing
    del resid
    far &= ~missing
    spikes = _widen(far, round(BAD_MARGIN_S * fs))
    del far
    if not spikes.any() or spikes.all():
        return y, no_burst
    first, last = _runs(spikes)
    y = y.copy()
    # np.interp over all good samples, from the only good samples it uses: each spike run's two
    # neighbours (the same brackets, so the same arithmetic and the same numbers), without the
    # grid-length index and value arrays of every good sample
    nb = np.unique(np.concatenate((first[first > 0] - 1, last[last < y.size])))
    y[spikes] = np.interp(np.flatnonzero(spikes), nb, y[nb])
    long = (last - first) > SPIKE_MAX_S * fs
    return y, _fill_runs(y.size, first[long], last[long])


def _blocks(y: np.ndarray, size: int) -> np.ndarray:
    """``y`` cut into rows of ``size`` samples, shape (n_blocks, size); the last is padded with its edge."""
    n_blocks = int(np.ceil(y.size / size))
    return np.pad(y, (0, n_blocks * size - y.size), mode="edge").reshape(n_blocks, size)


def _median_block_ptp(y: np.ndarray, fs: float, missing: np.ndarray, block_s: float) -> float:
    """Median peak-to-peak over blocks of ``block_s`` seconds that are not entirely missing."""
    size = max(1, round(block_s * fs))
    ptp = np.ptp(_blocks(y, size), axis=1)
    usable = ptp[~_blocks(missing, size).all(axis=1)]
    return float(np.median(usable)) if usable.size else 0.0


def _flat_mask(y: np.ndarray, fs: float, missing: np.ndarray) -> np.ndarray:
    """Samples in blocks of FLAT_BLOCK_S whose peak-to-peak is (almost) nil: a sensor off or saturated."""
    size = max(1, round(FLAT_BLOCK_S * fs))
    ptp = np.ptp(_blocks(y, size), axis=1)
    ref = _median_block_ptp(y, fs, missing, FLAT_BLOCK_S)
    flat_blocks = (ptp <= FLAT_REL * ref) & ~_blocks(missing, size).all(axis=1)
    return np.repeat(flat_blocks, size)[: y.size]


# --- breath detection -------------------------------------------------------------------------

def _detect_breaths(y: np.ndarray, fs: float, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inhalation onsets (sample indices, int) and their breath amplitudes (onset to next peak).

    NeuroKit2's khodadad2018 pipeline with its band-pass narrowed to :data:`CLEAN_BAND`: the
    published 0.05-3 Hz lets the cardiac oscillation of impedance and thermistor channels through
    (1-2 Hz), which the detector then counts as breaths; 1 Hz is the fastest plausible breathing.
    The detector (``rsp_findpeaks``, the core of ``rsp_peaks``) takes extrema between zero crossings
    and drops those whose swing is below 0.3 of the median swing. It runs on each usable stretch
    separately: it assumes crossings alternate, which a masked stretch would break for the rest of
    the recording.
    """
    from resp_sep.filters import butterworth

    onsets, amplitudes = [np.zeros(0, int)], [np.zeros(0)]
    first, last = _runs(~bad)
    long = (last - first) >= MIN_STRETCH_S * fs
    if long.any():  # (and only then is the signal long enough to filter)
        clean = butterworth(y, fs, lowcut=CLEAN_BAND[0], highcut=CLEAN_BAND[1], order=2)
    for a, b in zip(first[long], last[long]):
        troughs, peaks = _khodadad(clean[a:b], fs)
        onsets.append(troughs + a)
        amplitudes.append(clean[a:b][peaks] - clean[a:b][troughs])
    return np.concatenate(onsets), np.concatenate(amplitudes)


#: samples of the breath detector's zero-crossing segments handled at once
EXTREMA_CHUNK = 1 << 18


def _khodadad(clean: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Troughs and the peaks that follow them (sample indices): NeuroKit2 ``rsp_findpeaks(method="khodadad2018")``.

    The same steps and arithmetic (tests/test_rate.py compares them): the extreme between each pair
    of consecutive zero crossings (a maximum after a rising crossing, a minimum after a falling one;
    the first of equal values); extrema whose swing to the next one is at most 0.3 of the median
    swing are dropped, then those that break the alternation of peaks and troughs; the list starts
    on a trough and ends on a peak.
    """
    greater, smaller = clean > 0, clean < 0
    rise = np.flatnonzero(smaller[:-1] & greater[1:])
    fall = np.flatnonzero(greater[:-1] & smaller[1:])
    if rise.size == 0 or fall.size == 0:  # fewer than two crossings: no breaths at all
        return np.zeros(0, int), np.zeros(0, int)
    allx = np.sort(np.concatenate((rise, fall)), kind="mergesort")
    if allx.size < 2:
        return np.zeros(0, int), np.zeros(0, int)
    beg, end = allx[:-1], allx[1:]
    # maxima and minima alternate from the first crossing's kind (NeuroKit2 goes by position, not by
    # each crossing's own kind)
    up = (np.arange(beg.size) % 2 == 0) == bool(rise[0] < fall[0])
    extrema = np.empty(beg.size, dtype=np.int64)
    # the segments tile [allx[0], allx[-1]): taken a group of them at a time (bounded temporaries)
    i = 0
    while i < beg.size:
        j = int(np.searchsorted(beg, beg[i] + EXTREMA_CHUNK, side="left"))
        j = max(j, i + 1)
        seg = clean[beg[i]:end[j - 1]]
        starts = beg[i:j] - beg[i]
        lens = end[i:j] - beg[i:j]
        ext = np.where(up[i:j], np.maximum.reduceat(seg, starts), np.minimum.reduceat(seg, starts))
        # the first position of each segment's extreme (argmax / argmin's choice among equal values)
        pos = np.flatnonzero(seg == np.repeat(ext, lens))
        seg_of = np.searchsorted(starts, pos, side="right") - 1
        first = np.concatenate(([True], seg_of[1:] != seg_of[:-1]))
        extrema[i:j] = beg[i] + pos[first]
        i = j
    # outliers: swing to the next extremum at most 0.3 x the median swing
    swing = np.abs(np.diff(clean[extrema]))
    if swing.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    extrema = extrema[np.flatnonzero(swing > np.median(swing) * 0.3)]
    amplitudes = clean[extrema]
    d = np.sign(np.diff(amplitudes))
    broken = np.flatnonzero((d[:-1] + d[1:]) != 0) + 1
    extrema = np.delete(extrema, broken)
    amplitudes = np.delete(amplitudes, broken)
    if extrema.size < 2:
        return np.zeros(0, int), np.zeros(0, int)
    if amplitudes[0] > amplitudes[1]:
        extrema = extrema[1:]
    if amplitudes[-1] < amplitudes[-2]:
        extrema = extrema[:-1]
    peaks, troughs = extrema[1::2], extrema[0:-1:2]
    n = min(troughs.size, peaks.size)
    return troughs[:n].astype(int), peaks[:n].astype(int)


def _cycles_clear_of(onsets: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """For each cycle between consecutive onsets, shape (n_onsets - 1,): True when no sample is bad."""
    if onsets.size < 2:
        return np.zeros(0, bool)
    return (_count_true(bad, onsets[:-1], onsets[1:] + 1)) == 0


def _count_true(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Set samples of ``mask`` in each ``[a[i], b[i])`` (clipped), from one 32-bit running count."""
    c = np.cumsum(mask, dtype=np.int32 if mask.size < 2**31 else np.int64)
    a = np.clip(np.asarray(a), 0, mask.size)
    b = np.clip(np.asarray(b), 0, mask.size)
    hi = np.where(b > 0, c[np.maximum(b - 1, 0)], 0)
    lo = np.where(a > 0, c[np.maximum(a - 1, 0)], 0)
    return (hi - lo).astype(np.int64)


def _unusable_fractions(rel_start: np.ndarray, rel_end: np.ndarray, fs: float, missing: np.ndarray,
                        flat: np.ndarray, burst: np.ndarray) -> np.ndarray:
    """Fractions of each window that are missing, flat and artefact bursts, shape (n_windows, 3)."""
    i0 = np.clip(np.round(rel_start * fs).astype(int), 0, missing.size)
    i1 = np.clip(np.round(rel_end * fs).astype(int), 0, missing.size)
    length = np.maximum(i1 - i0, 1)
    cols = []
    for mask in (missing, flat & ~missing, burst & ~flat & ~missing):  # each sample counted once
        cols.append(_count_true(mask, i0, i1) / length)
    return np.stack(cols, axis=1) if cols[0].size else np.zeros((0, 3))


# --- window scoring (shared by waveforms and events) ------------------------------------------

def _score(times: np.ndarray, cycle_ok: np.ndarray, amplitudes: np.ndarray | None, starts: np.ndarray,
           ends: np.ndarray, unusable: np.ndarray, *, min_breaths: int, kind: str) -> RateWindows:
    """Apply the window rule of the module docstring to breath events ``times`` (s, sorted).

    ``cycle_ok`` (n_events - 1,) marks cycles clear of unusable samples; ``amplitudes`` (n_events,)
    are breath amplitudes or None; ``unusable`` (n_windows, 3) the missing, flat and burst fractions.
    """
    n = starts.size
    bpm, quality = np.full(n, np.nan), np.zeros(n)
    n_breaths, flag = np.zeros(n, int), np.full(n, "ok", dtype=object)
    dur = np.diff(times)
    counted = cycle_ok & (dur >= MIN_BREATH_S) & (dur <= MAX_BREATH_S)
    ref_amp = _reference_amplitude(amplitudes, counted)
    if amplitudes is not None and ref_amp > 0:  # ripples in a pause or in noise are not breaths
        counted &= np.abs(amplitudes[: counted.size]) >= MIN_REL_AMPLITUDE * ref_amp
    for w in range(n):
        # cycles k run from times[k] to times[k + 1]; both ends must lie in [start, end)
        k0 = np.searchsorted(times, starts[w], "left")
        k1 = np.searchsorted(times, ends[w], "left") - 1
        sel = np.arange(k0, max(k0, k1))
        sel = sel[counted[sel]]
        n_breaths[w] = sel.size
        flag[w], quality[w], bpm[w] = _score_one(
            dur[sel], None if amplitudes is None else amplitudes[sel], ref_amp, ends[w] - starts[w],
            unusable[w], min_breaths)
    amp = np.full(times.size, np.nan) if amplitudes is None else np.asarray(amplitudes, dtype=float)[: times.size]
    return RateWindows(starts, ends, bpm, n_breaths, quality, flag.astype(str), kind, times, amp, counted)


def _reference_amplitude(amplitudes: np.ndarray | None, counted: np.ndarray) -> float:
    """The recording's typical breath amplitude: median over the counted cycles."""
    if amplitudes is None or not counted.any():
        return np.nan
    # one amplitude per onset; cycle k starts at onset k
    return float(np.median(np.abs(amplitudes[: counted.size][counted])))


def _score_one(dur: np.ndarray, amp: np.ndarray | None, ref_amp: float, window_s: float,
               unusable: np.ndarray, min_breaths: int) -> tuple[str, float, float]:
    """(flag, quality, bpm) of one window from the durations (s) of its counted cycles.

    ``unusable`` holds the window's missing, flat and burst fractions.
    """
    lost = float(unusable.sum())
    if lost > 0.5:  # named after what dominates
        return ("nan", "flat", "poor_quality")[int(np.argmax(unusable))], 0.0, np.nan
    if dur.size == 0:
        return "too_few_breaths", 0.0, np.nan
    med = float(np.median(dur))
    # up to two cycles are lost at the edges (cycles must lie wholly inside the window)
    coverage = min(1.0, dur.sum() / max(window_s * (1.0 - lost) - 2 * med, med))
    in_range = (dur >= REGULAR_RANGE[0] * med) & (dur <= REGULAR_RANGE[1] * med)
    regular = float(np.mean(in_range))
    rel_amp = 1.0 if amp is None or not ref_amp > 0 else float(np.median(np.abs(amp))) / ref_amp
    quality = float(min(coverage, regular, min(rel_amp, 1.0)))
    rate = 60.0 / float(np.mean(dur[in_range])) if in_range.any() else np.nan
    if dur.size < min_breaths or coverage < MIN_COVERAGE:
        return "too_few_breaths", quality, np.nan
    if regular < 0.5 or rel_amp < MIN_REL_AMPLITUDE or not MIN_BPM <= rate <= MAX_BPM:  # NaN fails too
        return "poor_quality", quality, np.nan
    return ("partial" if lost > PARTIAL_MIN else "ok"), quality, rate
