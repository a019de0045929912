"""Preprocessing: resampling to the model rate, segmenting, scaling and segment quality control.

The separator works on fixed 12,288-sample segments at 200 Hz (61.44 s). Everything here is
plain numpy/scipy and works on one channel at a time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from resp_sep.errors import InputError

#: sampling rate of the model input (Hz)
MODEL_FS = 200.0
#: samples per model segment (12,288 samples = 61.44 s at 200 Hz)
SEGMENT_LEN = 12_288
#: heart-rate range accepted by the quality filter (beats/min)
HR_RANGE = (40.0, 180.0)


def resample(x: np.ndarray, fs_in: float, fs_out: float = MODEL_FS, max_denominator: int = 1000) -> np.ndarray:
    """Anti-aliased polyphase resampling.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Signal sampled at ``fs_in`` Hz.
    fs_in, fs_out : float
        Input and output rates in Hz. Non-integer ratios are approximated by the nearest fraction
        with denominator <= ``max_denominator`` (relative rate error < 1e-6 for usual rates).

    Returns
    -------
    ndarray, shape (ceil(n * up / down),), float64
        The signal at ``fs_out`` Hz. ``resample_poly``'s Kaiser-windowed FIR low-pass (cut-off at
        the lower Nyquist) keeps tones below it at their frequency and amplitude.
    """
    from resp_sep.resample import rate_ratio, resample_line

    x = np.asarray(x, dtype=np.float64)
    up, down = rate_ratio(fs_in, fs_out, max_denominator)
    if up == down:
        return x.copy()
    # Padding with the line through the end values (not zeros) avoids a filter transient at both
    # ends of the record. resample_line is scipy's resample_poly(padtype="line") without importing
    # scipy.signal (a second of start-up): the same numbers, tested bit for bit.
    return resample_line(x, up, down)


def n_segments(n: int, length: int = SEGMENT_LEN, hop: int = SEGMENT_LEN) -> int:
    """Number of full segments of ``length`` samples with step ``hop`` in a signal of ``n`` samples."""
    return 0 if n < length else 1 + (n - length) // hop


def segment(x: np.ndarray, length: int = SEGMENT_LEN, hop: int | None = None) -> np.ndarray:
    """Cut a signal into full, possibly overlapping segments (a strided view, no copy).

    Parameters
    ----------
    x : ndarray, shape (n,)
    length : int
        Segment length in samples (12,288 = 61.44 s at 200 Hz).
    hop : int, optional
        Step between segment starts in samples (default ``length``: no overlap). Samples after the
        last full segment are not covered; :mod:`resp_sep.separate` handles full coverage.

    Returns
    -------
    ndarray, shape (n_segments, length)
        Read-only view into ``x``.
    """
    hop = length if hop is None else int(hop)
    if hop <= 0:
        raise ValueError("hop must be positive")
    x = np.asarray(x)
    k = n_segments(len(x), length, hop)
    if k == 0:
        return np.empty((0, length), dtype=x.dtype)
    return np.lib.stride_tricks.sliding_window_view(x, length)[::hop][:k]


def minmax_scale(segments: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale each segment to [0, 1] (the model's BCE target range).

    Parameters
    ----------
    segments : ndarray, shape (..., length)

    Returns
    -------
    ndarray, same shape, float32
        Flat segments (range < ``eps``) become all 0.5 rather than NaN.
    """
    s = np.asarray(segments, dtype=np.float32)
    lo = s.min(axis=-1, keepdims=True)
    hi = s.max(axis=-1, keepdims=True)
    span = hi - lo
    flat = span < eps
    out = (s - lo) / np.where(flat, 1.0, span)
    if np.any(flat):
        out = np.where(flat, np.float32(0.5), out)
    return out.astype(np.float32, copy=False)


def robust_bounds(segments: np.ndarray, clip_pct: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment scaling bounds: the ``clip_pct`` and ``100 - clip_pct`` percentiles.

    Parameters
    ----------
    segments : ndarray, shape (..., length)
    clip_pct : float
        Percent of samples allowed beyond each bound (0 gives the plain minimum and maximum).

    Returns
    -------
    (lo, hi) : ndarrays, shape (..., 1), float32
    """
    s = np.asarray(segments, dtype=np.float32)
    if not 0.0 <= clip_pct < 50.0:
        raise ValueError(f"clip percentile must be in [0, 50) (got {clip_pct})")
    if clip_pct == 0.0:
        return s.min(axis=-1, keepdims=True), s.max(axis=-1, keepdims=True)
    lo, hi = np.percentile(s, [clip_pct, 100.0 - clip_pct], axis=-1, keepdims=True)
    return lo.astype(np.float32), hi.astype(np.float32)


def robust_scale(segments: np.ndarray, clip_pct: float = 0.0, eps: float = 1e-12) -> np.ndarray:
    """Clip each segment to its ``clip_pct`` / ``100 - clip_pct`` percentiles, then min-max scale.

    A single artefact spike (electrode pop, motion) otherwise sets a min-max segment's range and
    squeezes the cardiac and respiratory signal into a sliver of [0, 1]; with the clip, samples
    beyond the percentiles saturate at 0 or 1 instead. ``clip_pct = 0`` is :func:`minmax_scale`.

    Parameters
    ----------
    segments : ndarray, shape (..., length)
    clip_pct : float
        Percent of each segment's samples clipped at either end (e.g. 0.1: 12 samples of 12,288).

    Returns
    -------
    ndarray, same shape, float32, values in [0, 1]
        Flat segments (range < ``eps``) become all 0.5.
    """
    if clip_pct == 0.0:
        return minmax_scale(segments, eps)
    s = np.asarray(segments, dtype=np.float32)
    lo, hi = robust_bounds(s, clip_pct)
    span = hi - lo
    flat = span < eps
    out = np.clip((s - lo) / np.where(flat, 1.0, span), 0.0, 1.0)
    if np.any(flat):
        out = np.where(flat, np.float32(0.5), out)
    return out.astype(np.float32, copy=False)


# -------------------------------------------------------------------------------- quality control


@dataclass
class QualityReport:
    """Which segments were kept and why the others were dropped.

    Attributes
    ----------
    keep : ndarray of bool, shape (n_segments,)
    reasons : dict of str to int
        Count of dropped segments per reason: ``nan``, ``flat``, ``clipped``, ``heart_rate``.
    heart_rate : ndarray, shape (n_segments,)
        Median heart rate per segment in beats/min (NaN where not computed).
    """

    keep: np.ndarray
    reasons: dict[str, int] = field(default_factory=dict)
    heart_rate: np.ndarray | None = None

    @property
    def n_total(self) -> int:
        return int(self.keep.size)

    @property
    def n_kept(self) -> int:
        return int(self.keep.sum())

    def summary(self) -> str:
        """One line such as ``'118/120 segments kept (dropped: flat 1, heart_rate 1)'``."""
        dropped = ", ".join(f"{k} {v}" for k, v in self.reasons.items() if v)
        return f"{self.n_kept}/{self.n_total} segments kept" + (f" (dropped: {dropped})" if dropped else "")


def segment_heart_rate(seg: np.ndarray, fs: float = MODEL_FS, kind: str = "ecg") -> float:
    """Median heart rate of one segment in beats/min from NeuroKit2 beat detection (NaN if none).

    Parameters
    ----------
    seg : ndarray, shape (length,)
    fs : float
        Sampling rate in Hz.
    kind : {"ecg", "ppg"}
    """
    import neurokit2 as nk

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "ppg":
                clean = nk.ppg_clean(seg, sampling_rate=int(round(fs)))
                peaks = nk.ppg_findpeaks(clean, sampling_rate=int(round(fs)))["PPG_Peaks"]
            else:
                # The lead polarity is unknown: NeuroKit2's detector works on |clean| peaks
                # well enough for a plausibility check.
                # mindelay 0.2 s (NeuroKit2's default is 0.3 s) lets rates up to 300 bpm through;
                # with 0.3 s a 200-300 bpm tachycardia folds to 100-150 bpm and passes the check.
                clean = nk.ecg_clean(seg, sampling_rate=int(round(fs)))
                peaks = nk.ecg_findpeaks(clean, sampling_rate=int(round(fs)), mindelay=0.2)["ECG_R_Peaks"]
    except Exception:
        return float("nan")
    peaks = np.asarray(peaks)
    if peaks.size < 3:
        return float("nan")
    rr = np.diff(peaks) / fs
    return float(60.0 / np.median(rr))


def quality_filter(
    segments: np.ndarray,
    fs: float = MODEL_FS,
    kind: str = "ecg",
    hr_range: tuple[float, float] = HR_RANGE,
    clip_fraction: float = 0.02,
    check_heart_rate: bool = True,
) -> QualityReport:
    """Flag segments unusable for training: NaN, flat, clipped, or implausible heart rate.

    Parameters
    ----------
    segments : ndarray, shape (n_segments, length)
        Unscaled segments at ``fs`` Hz.
    fs : float
        Sampling rate in Hz.
    kind : {"ecg", "ppg"}
        Which beat detector to use for the heart-rate check.
    hr_range : (float, float)
        Accepted median heart rate in beats/min.
    clip_fraction : float
        A segment is clipped when more than this fraction of its samples sit at its min or max
        (a saturated amplifier or ADC rail gives such plateaus).
    check_heart_rate : bool
        Run the NeuroKit2 beat detection (the slow part, ~10 ms per segment).

    Returns
    -------
    QualityReport
    """
    n = len(segments)
    keep = np.ones(n, dtype=bool)
    reasons = {"nan": 0, "flat": 0, "clipped": 0, "heart_rate": 0}
    hr = np.full(n, np.nan)
    for i, s in enumerate(segments):
        if not np.all(np.isfinite(s)):
            reasons["nan"] += 1
            keep[i] = False
            continue
        lo, hi = float(s.min()), float(s.max())
        span = hi - lo
        if span <= 1e-9 * max(1.0, abs(hi)) or np.std(s) < 1e-9:
            reasons["flat"] += 1
            keep[i] = False
            continue
        tol = 1e-6 * span
        at_rail = max(np.count_nonzero(s >= hi - tol), np.count_nonzero(s <= lo + tol))
        if at_rail > clip_fraction * s.size:
            reasons["clipped"] += 1
            keep[i] = False
            continue
        if check_heart_rate:
            hr[i] = segment_heart_rate(s, fs, kind)
            if not (hr_range[0] <= hr[i] <= hr_range[1]):
                reasons["heart_rate"] += 1
                keep[i] = False
    return QualityReport(keep=keep, reasons=reasons, heart_rate=hr)


def check_channel(x: np.ndarray, fs: float, label: str, path: str, min_fs: float = 50.0) -> None:
    """Refuse a channel that cannot carry a cardiac signal (one-line :class:`InputError`).

    The checks of :func:`resp_sep.chunks.check` (the one set every input goes through), on an array.

    Parameters
    ----------
    x : ndarray, shape (n,)
    fs : float
        Sampling rate in Hz; below ``min_fs`` the QRS complex is not resolved.
    """
    from resp_sep.chunks import array_stats, check

    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise InputError(f"channel '{label}' has no samples", path)
    check(array_stats(x, fs), label, path, min_fs=min_fs)


def fill_gaps(x: np.ndarray) -> np.ndarray:
    """Replace NaN samples by linear interpolation (edges: nearest value); returns float64."""
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    idx = np.arange(x.size)
    out = x.copy()
    out[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return out


@dataclass
class LoadedSignal:
    """One channel of a recording, checked and resampled.

    Attributes
    ----------
    x : ndarray, shape (n,)
        Samples at ``fs`` Hz, physical units, NaN gaps interpolated.
    fs : float
        Sampling rate of ``x`` in Hz (``MODEL_FS`` unless ``fs_out`` asked otherwise).
    label, role : str
        The channel used and the role it was chosen for.
    fs_orig : float
        The channel's rate in the file (Hz).
    path : str
    note : str
        Ambiguity note from role detection (empty when the choice was clear).
    """

    x: np.ndarray
    fs: float
    label: str
    role: str
    fs_orig: float
    path: str
    note: str = ""

    @property
    def duration_s(self) -> float:
        return len(self.x) / self.fs


def load_signal(recording, role: str, overrides: dict[str, str] | None = None,
                fs_out: float | None = MODEL_FS, min_fs: float = 50.0) -> LoadedSignal:
    """Read the channel serving ``role`` from a recording, check it and resample it.

    Parameters
    ----------
    recording : Recording or path
    role : str
        ``ecg``, ``ppg``, ``nasal``, ``thor`` or ``abdo``.
    overrides : dict, optional
        ``{role: label}`` from ``--channel``.
    fs_out : float or None
        Output rate in Hz (None keeps the file's rate).
    min_fs : float
        Lowest acceptable channel rate in Hz (50 Hz for ECG/PPG; references may use less).

    Raises
    ------
    InputError
        No channel for the role, or the channel is NaN/constant or has an absurd rate.
    """
    from resp_sep.channels import detect_roles
    from resp_sep.io import Recording, read_recording

    rec = recording if isinstance(recording, Recording) else read_recording(recording)
    roles = detect_roles(rec.labels, overrides, path=str(rec.path))
    if role not in roles:
        raise InputError(
            f"no {role} channel found (channels: {', '.join(rec.labels)}); "
            f"name one with --channel {role}=LABEL",
            str(rec.path),
        )
    choice = roles[role]
    ch = rec.channel(choice.label)
    x = ch.read()
    check_channel(x, ch.fs, ch.label, str(rec.path), min_fs=min_fs)
    x = fill_gaps(x)
    if fs_out is not None:
        x = resample(x, ch.fs, fs_out)
    return LoadedSignal(x=x, fs=fs_out or ch.fs, label=ch.label, role=role, fs_orig=ch.fs,
                        path=str(rec.path), note=choice.note)
