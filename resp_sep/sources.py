"""Respiratory sources: every respiration-like waveform respsep can derive from one ECG or PPG channel.

A *source* takes one input signal (ECG or PPG at its own rate) and returns a respiration-like
waveform on a common grid (:data:`GRID_FS`, 10 Hz, sample ``k`` at ``k / GRID_FS`` s from the
recording's start), NaN where it is not valid (input missing, beats not found). All sources share
one signature and one registry (:data:`SOURCES`), so extraction (``respsep extract --method NAME``),
fusion and evaluation (``respsep eval --baselines``) run the same code: there is no second copy.

ECG sources
    ``separator_ecg``: the multi-encoder autoencoder's respiration source (masked encoding of the
    chosen encoder, :mod:`resp_sep.separate`).
    ``ecg_rsa_<method>``: respiratory sinus arrhythmia, the band-passed instantaneous heart rate
    (NeuroKit2 ``ecg_rsp`` for ``vangent2019``, ``charlton2016``, ``soni2019``, ``sarkar2015``).
    ``ecg_r_amplitude``: R-wave amplitude (ECG-derived respiration, EDR).
    ``ecg_rs_amplitude``: R-to-S amplitude: the same modulation, free of baseline offsets.
    ``ecg_qrs_area``: area under the QRS complex (±50 ms around the R peak).
    ``ecg_baseline``: baseline wander, the ECG itself low-passed to the breathing band.
PPG sources
    ``separator_ppg``; ``ppg_baseline``: the PPG band-passed to the breathing band (intensity
    modulation, RIIV); ``ppg_amplitude``: pulse amplitude, peak minus preceding foot (RIAV);
    ``ppg_rate``: pulse rate (RIFV, the PPG twin of RSA).

Every heuristic output is band-passed to :data:`RESP_BAND` (6-42 breaths/min). Beat-derived
series (heart rate, amplitudes) change once per beat: they are interpolated (monotone cubic) onto
the grid; their content of interest is below 1 Hz, so nothing is lost at 10 Hz and an 8-hour
night costs seconds. Beats are detected once per channel and shared by the sources that need them
(:class:`SignalContext`).

References: Charlton et al., "An assessment of algorithms to estimate respiratory rate from the
electrocardiogram and photoplethysmogram", Physiol. Meas. 37 (2016) 610; Charlton et al.,
"Breathing rate estimation from the electrocardiogram and photoplethysmogram: a review", IEEE Rev.
Biomed. Eng. 11 (2018) 2; Karlen et al., "Multiparameter respiratory rate estimation from the
photoplethysmogram", IEEE TBME 60 (2013) 1946.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import numpy as np

from resp_sep.errors import InputError, RespSepError

#: rate (Hz) of every source waveform: breathing lies below 1 Hz.
GRID_FS = 10.0
#: breathing band (Hz) of every heuristic source: 6-42 breaths/min.
RESP_BAND = (0.1, 0.7)
#: ECG is analysed at no more than this rate (Hz): R-peaks need no finer timing for breathing.
MAX_ECG_FS = 500.0
#: PPG is analysed at this rate (Hz): its beats lie below 10 Hz.
PPG_FS = 100.0
#: fewest beats per minute of usable signal below which we say that no beats were found.
MIN_BEATS_PER_MIN = 20.0
#: heart/pulse rates (beats/min) outside this range are detection errors, bridged by interpolation.
HR_RANGE = (25.0, 220.0)
#: R-peak detectors tried in turn until one finds enough beats.
ECG_PEAK_METHODS = ("neurokit", "pantompkins1985")
ECG_RSP_METHODS = ("vangent2019", "charlton2016", "soni2019", "sarkar2015")
#: half-width (s) of the QRS area window around each R peak.
QRS_HALF_S = 0.05
#: where the S wave is searched after the R peak (s).
S_SEARCH_S = 0.08


# --------------------------------------------------------------------------------- the interface


@dataclass
class SignalContext:
    """One input channel and the intermediate results its sources share (computed once, on demand).

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,)
        The ECG or PPG in any unit; NaN marks missing samples.
    fs : float
        Its sampling rate (Hz).
    kind : {"ecg", "ppg"}
    path : str, optional
        The recording, for error messages.
    separator : callable, optional
        ``separator(kind)`` returns a loaded :class:`resp_sep.separate.Separator` for ``kind``
        (called only when a separator source runs, so heuristics never import torch).
    separator_options : dict
        Extra keyword arguments of :meth:`Separator.extract` (``hop``, ``batch_size``, ``progress``).
    """

    x: np.ndarray
    fs: float
    kind: str
    path: str | None = None
    separator: Callable[[str], object] | None = None
    separator_options: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.kind not in ("ecg", "ppg"):
            raise ValueError(f"kind must be 'ecg' or 'ppg' (got {self.kind!r})")
        self.x = np.asarray(self.x, dtype=np.float64).reshape(-1)

    @property
    def n_grid(self) -> int:
        """Samples on the :data:`GRID_FS` grid covering the input."""
        return _n_out(self.x.size, self.fs)

    @property
    def duration_s(self) -> float:
        return self.x.size / self.fs

    def cached(self, key: str, fn: Callable[[], object]):
        """``fn()`` computed once per context; an :class:`InputError` is cached and raised again."""
        if key not in self._cache:
            try:
                self._cache[key] = fn()
            except RespSepError as e:
                self._cache[key] = e
        v = self._cache[key]
        if isinstance(v, RespSepError):
            raise v
        return v

    @property
    def missing(self) -> np.ndarray:
        """Missing-input mask on the grid, shape (n_grid,)."""
        return self.cached("missing", lambda: _missing_out(self.x, self.fs))

    def r_peaks(self) -> np.ndarray:
        """R-peak sample indices at ``fs`` (:func:`ecg_r_peaks`)."""
        return self.cached("r_peaks", lambda: ecg_r_peaks(self.x, self.fs, path=self.path))

    def clean_ecg(self) -> tuple[np.ndarray, float]:
        """NeuroKit2-cleaned ECG and its rate (Hz)."""
        return self.cached("clean_ecg", lambda: _clean_ecg(self.x, self.fs))

    def ppg_beats(self) -> tuple[np.ndarray, np.ndarray]:
        """PPG peak times (s) and pulse amplitudes (:func:`ppg_beats`)."""
        return self.cached("ppg_beats", lambda: ppg_beats(self.x, self.fs, path=self.path))


@dataclass(frozen=True)
class Source:
    """A registered respiratory source.

    Attributes
    ----------
    name : str
    kind : {"ecg", "ppg"}
        The input signal it needs.
    fn : callable
        ``fn(ctx: SignalContext) -> waveform`` of shape (ctx.n_grid,) at :data:`GRID_FS`.
    description : str
        One line for ``--help`` and the docs.
    fusion : bool
        Part of the default fusion set (the NeuroKit2 RSA variants are near-copies of one another,
        so only one of them votes, lest heart rate be counted four times; the separators join when
        a model is given).
    model : bool
        Needs the separator model (torch).
    family : str
        The physiological modulation it measures on its channel (:data:`FAMILIES`). Sources of one
        family fail together (R-wave amplitude, R-S amplitude and QRS area all read the same
        QRS complexes), so fusion gives a family one vote, not one per member
        (:func:`resp_sep.fusion.fuse`, ``families``).
    """

    name: str
    kind: str
    fn: Callable[[SignalContext], np.ndarray]
    description: str
    fusion: bool = True
    model: bool = False
    family: str = ""


#: every source by name, in a stable order (ECG first).
SOURCES: dict[str, Source] = {}


#: the modulation families (:attr:`Source.family`), per channel: the mechanism by which breathing
#: reaches the signal (Charlton et al. 2018: baseline wander, amplitude and frequency modulation),
#: and the separator as a family of its own.
FAMILIES = ("ecg_rate", "ecg_amplitude", "ecg_baseline", "ppg_rate", "ppg_amplitude", "ppg_baseline",
            "separator_ecg", "separator_ppg")


def register(name: str, kind: str, description: str, *, family: str, fusion: bool = True, model: bool = False):
    """Decorator adding a source function to :data:`SOURCES`."""
    if family not in FAMILIES:
        raise ValueError(f"source {name!r}: unknown family {family!r}")

    def deco(fn):
        if name in SOURCES:
            raise ValueError(f"source {name!r} registered twice")
        SOURCES[name] = Source(name, kind, fn, description, fusion, model, family)
        return fn

    return deco


def source_families(names) -> dict[str, str]:
    """``{name: family}`` for registered sources among ``names`` (unknown names are left out)."""
    return {n: SOURCES[n].family for n in names if n in SOURCES}


def source_names(kind: str | None = None, *, fusion_only: bool = False, heuristics_only: bool = False) -> list[str]:
    """Registered source names, optionally for one input kind, the fusion set or heuristics only."""
    return [n for n, s in SOURCES.items()
            if (kind is None or s.kind == kind) and (s.fusion or not fusion_only)
            and not (heuristics_only and s.model)]


@dataclass
class SourceOutput:
    """One source's waveform on the grid.

    Attributes
    ----------
    name : str
    kind : str
        ``ecg`` or ``ppg``.
    wave : numpy.ndarray, shape (n_grid,)
        Respiration-like waveform (arbitrary units) at :data:`GRID_FS`, NaN where invalid.
    fs : float
        :data:`GRID_FS` (Hz).
    """

    name: str
    kind: str
    wave: np.ndarray
    fs: float = GRID_FS

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask, shape (n_grid,): samples with a value."""
        return np.isfinite(self.wave)


def compute_source(name: str, ctx: SignalContext) -> SourceOutput:
    """Run one source on a channel.

    Raises
    ------
    InputError
        When the source cannot be computed from this channel (no beats, too short, ...).
    KeyError
        Unknown name.
    """
    src = SOURCES[name]
    if src.kind != ctx.kind:
        raise ValueError(f"source {name!r} needs a {src.kind.upper()} channel, got {ctx.kind.upper()}")
    wave = _nan_where(np.asarray(src.fn(ctx), dtype=np.float64), ctx.missing)
    if not np.isfinite(wave).any():
        raise InputError(f"{name} gave no valid samples", ctx.path)
    return SourceOutput(name, src.kind, wave)


def compute_sources(names: list[str], ctx: SignalContext) -> tuple[dict[str, SourceOutput], dict[str, str]]:
    """Run several sources on one channel; a source that fails is reported, not fatal.

    Returns
    -------
    outputs : dict
        name -> :class:`SourceOutput`, for the sources that ran.
    failures : dict
        name -> one-line reason, for those that could not.
    """
    outputs, failures = {}, {}
    for name in names:
        try:
            outputs[name] = compute_source(name, ctx)
        except RespSepError as e:
            if e.exit_code not in (3,):  # model and usage errors are the user's to fix: stop
                raise
            failures[name] = e.problem
    return outputs, failures


def all_heuristics(x: np.ndarray, fs: float, kind: str, path: str | None = None) -> dict[str, SourceOutput]:
    """Every heuristic (model-free) source of one ECG or PPG channel; beats are detected once.

    Raises
    ------
    InputError
        When none of them can run (the first reason is given).
    """
    ctx = SignalContext(x, fs, kind, path=path)
    out, failures = compute_sources(source_names(kind, heuristics_only=True), ctx)
    if not out:
        raise InputError(next(iter(failures.values()), "no source could run"), path)
    return out


# ----------------------------------------------------------------------------------- ECG sources


def _rsa(method: str):
    def fn(ctx: SignalContext) -> np.ndarray:
        import neurokit2 as nk

        rate = ctx.cached("beat_rate", lambda: _beat_rate(ctx.r_peaks(), ctx.fs, ctx.n_grid))
        if not np.isfinite(rate).any():
            raise InputError("no usable beat intervals", ctx.path)
        return np.asarray(nk.ecg_rsp(_bridge(rate), sampling_rate=GRID_FS, method=method), dtype=float)

    return fn


for _m in ECG_RSP_METHODS:
    register(f"ecg_rsa_{_m}", "ecg", f"heart rate (RSA), NeuroKit2 ecg_rsp method {_m}", family="ecg_rate",
             fusion=(_m == "sarkar2015"))(_rsa(_m))


def _around_r(ctx: SignalContext, lo_s: float, hi_s: float) -> tuple[np.ndarray, float]:
    """The cleaned ECG around every R peak, from ``lo_s`` to ``hi_s`` (s), shape (n_beats, n); and its rate (Hz)."""
    clean, fs_c = ctx.clean_ecg()
    idx = np.round(ctx.r_peaks() * fs_c / ctx.fs).astype(int)
    offs = np.arange(int(round(lo_s * fs_c)), int(round(hi_s * fs_c)) + 1)
    return clean[np.clip(idx[:, None] + offs[None, :], 0, clean.size - 1)], fs_c


#: beats whose surroundings are gathered at once (the rows are independent: the same values as all at
#: once, with temporaries bounded whatever the recording's length)
BEAT_CHUNK = 8192


def _beat_values(ctx: SignalContext, lo_s: float, hi_s: float, fn: Callable[[np.ndarray, float], np.ndarray]) -> np.ndarray:
    """``fn(rows, fs_c)`` of :func:`_around_r`'s rows, :data:`BEAT_CHUNK` beats at a time; one value per beat."""
    clean, fs_c = ctx.clean_ecg()
    peaks = ctx.r_peaks()
    idx = np.round(peaks * fs_c / ctx.fs).astype(int)
    offs = np.arange(int(round(lo_s * fs_c)), int(round(hi_s * fs_c)) + 1)
    parts = [fn(clean[np.clip(idx[a:a + BEAT_CHUNK, None] + offs[None, :], 0, clean.size - 1)], fs_c)
             for a in range(0, idx.size, BEAT_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _per_beat(ctx: SignalContext, values: np.ndarray) -> np.ndarray:
    """One value per R peak, interpolated onto the grid and band-passed to :data:`RESP_BAND`."""
    return _bandpass(_beat_series(ctx.r_peaks() / ctx.fs, values, ctx.n_grid), GRID_FS)


@register("ecg_r_amplitude", "ecg", "R-wave amplitude (EDR)", family="ecg_amplitude")
def _ecg_r_amplitude(ctx: SignalContext) -> np.ndarray:
    return _per_beat(ctx, _beat_values(ctx, 0.0, 0.0, lambda seg, fs_c: seg[:, 0]))


@register("ecg_rs_amplitude", "ecg", "R-to-S amplitude (EDR free of baseline offsets)", family="ecg_amplitude")
def _ecg_rs_amplitude(ctx: SignalContext) -> np.ndarray:
    return _per_beat(ctx, _beat_values(ctx, 0.0, S_SEARCH_S, lambda seg, fs_c: seg[:, 0] - seg.min(axis=1)))


@register("ecg_qrs_area", "ecg", "QRS area (±50 ms around the R peak)", family="ecg_amplitude")
def _ecg_qrs_area(ctx: SignalContext) -> np.ndarray:
    def area(seg: np.ndarray, fs_c: float) -> np.ndarray:
        # area above the local baseline (the window's edges), so that wander does not leak in
        base = 0.5 * (seg[:, :1] + seg[:, -1:])
        return (seg - base).sum(axis=1) / fs_c

    return _per_beat(ctx, _beat_values(ctx, -QRS_HALF_S, QRS_HALF_S, area))


@register("ecg_baseline", "ecg", "baseline wander (the ECG low-passed to the breathing band)", family="ecg_baseline")
def _ecg_baseline(ctx: SignalContext) -> np.ndarray:
    ctx.r_peaks()  # a channel without heart beats is not an ECG, whatever its wander
    x = _check(ctx.x, ctx.fs, "ECG", ctx.path)
    return _bandpass(_resample(_bridge(x), ctx.fs, GRID_FS, ctx.n_grid), GRID_FS)


# ----------------------------------------------------------------------------------- PPG sources


@register("ppg_baseline", "ppg", "PPG intensity (the PPG band-passed to the breathing band, RIIV)", family="ppg_baseline")
def _ppg_baseline(ctx: SignalContext) -> np.ndarray:
    ctx.ppg_beats()  # a channel without pulses is not a PPG
    x = _check(ctx.x, ctx.fs, "PPG", ctx.path)
    return _bandpass(_resample(_bridge(x), ctx.fs, GRID_FS, ctx.n_grid), GRID_FS)


@register("ppg_amplitude", "ppg", "pulse amplitude, peak minus preceding foot (RIAV)", family="ppg_amplitude")
def _ppg_amplitude(ctx: SignalContext) -> np.ndarray:
    times, amp = ctx.ppg_beats()
    return _bandpass(_beat_series(times, amp, ctx.n_grid), GRID_FS)


@register("ppg_rate", "ppg", "pulse rate (RIFV)", family="ppg_rate")
def _ppg_rate(ctx: SignalContext) -> np.ndarray:
    times, _ = ctx.ppg_beats()
    rate = _beat_rate(np.round(times * ctx.fs).astype(int), ctx.fs, ctx.n_grid)
    if not np.isfinite(rate).any():
        raise InputError("no usable pulse intervals", ctx.path)
    return _bandpass(rate, GRID_FS)


# ----------------------------------------------------------------------------- separator sources


def _separator(ctx: SignalContext) -> np.ndarray:
    if ctx.separator is None:
        raise ValueError("this context has no separator loader")
    sep = ctx.separator(ctx.kind)
    x = _bridge(_check(ctx.x, ctx.fs, ctx.kind.upper(), ctx.path))
    y = sep.extract(x, ctx.fs, out_fs=GRID_FS, path=ctx.path, **ctx.separator_options)
    return fit_length(np.asarray(y, dtype=np.float64), ctx.n_grid)


# Not in the default fusion set while the shipped models do not improve it: on the development
# subjects the fusion with and without them tied (docs/method.md) and they cost two thirds of the
# run time. They join when a model is given (--model) or named (--method fusion,separator_ecg).
register("separator_ecg", "ecg", "multi-encoder autoencoder, respiration encoder (shipped ECG model)",
         family="separator_ecg", fusion=False, model=True)(_separator)
register("separator_ppg", "ppg", "multi-encoder autoencoder, respiration encoder (shipped PPG model)",
         family="separator_ppg", fusion=False, model=True)(_separator)


# --------------------------------------------------------------------------------- beat detection


def ecg_r_peaks(ecg: np.ndarray, fs: float, path: str | None = None) -> np.ndarray:
    """R-peak sample indices (at ``fs``): NeuroKit2 ``ecg_clean`` + ``ecg_peaks``.

    The ``neurokit`` detector is tried first, then ``pantompkins1985`` when it finds fewer than
    :data:`MIN_BEATS_PER_MIN` (it misses wide, slurred complexes such as paced or ventricular beats).
    Artefact correction (Lipponen & Tarvainen 2019) is on, as in NeuroKit2's own ``ecg_process``:
    an ectopic or missed beat would otherwise be a heart-rate spike that the band-pass rings on.

    Returns
    -------
    numpy.ndarray of int, shape (n_beats,)

    Raises
    ------
    InputError
        When no heart beats can be found (flat, missing or non-ECG signal).
    """
    import neurokit2 as nk

    clean, fs_c = _clean_ecg(ecg, fs, path)
    peaks = np.zeros(0, int)
    for method in ECG_PEAK_METHODS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, info = nk.ecg_peaks(clean, sampling_rate=fs_c, method=method, correct_artifacts=True)
            peaks = np.asarray(info["ECG_R_Peaks"], dtype=int)
        except Exception:  # noqa: BLE001 - NeuroKit raises assorted errors on signals without beats
            peaks = np.zeros(0, int)
        if _enough_beats(peaks.size, ecg, fs):
            break
    peaks = np.round(peaks * fs / fs_c).astype(int)
    _require_beats(peaks.size, ecg, fs, "ECG R-peaks", path)
    return peaks


def ppg_beats(ppg: np.ndarray, fs: float, path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Systolic peak times (s) and pulse amplitudes (peak minus the lowest point since the previous peak).

    NeuroKit2 ``ppg_clean`` + ``ppg_findpeaks`` (method ``elgendi``) at :data:`PPG_FS`.

    Returns
    -------
    times_s, amplitude : numpy.ndarray, shape (n_beats,)

    Raises
    ------
    InputError
        When no pulses can be found.
    """
    import neurokit2 as nk

    x = _check(ppg, fs, "PPG", path)
    fs_p = min(fs, PPG_FS)
    y = _resample(_bridge(x), fs, fs_p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean = np.asarray(nk.ppg_clean(y, sampling_rate=fs_p), dtype=float)
            peaks = np.asarray(nk.ppg_findpeaks(clean, sampling_rate=fs_p)["PPG_Peaks"], dtype=int)
    except Exception:  # noqa: BLE001 - NeuroKit raises assorted errors on signals without pulses
        peaks = np.zeros(0, int)
    _require_beats(peaks.size, ppg, fs, "PPG pulses", path)
    # the foot of each pulse: the minimum between the previous peak (or the start) and this one
    starts = np.concatenate(([0], peaks[:-1]))
    feet = np.minimum.reduceat(clean, starts)
    # reduceat spans starts[i]..starts[i+1]-1 = previous peak .. this peak - 1; the last one runs to the end
    feet[-1] = clean[starts[-1]: peaks[-1] + 1].min()
    return peaks / fs_p, clean[peaks] - feet


def _enough_beats(n_beats: int, x: np.ndarray, fs: float) -> bool:
    """At least MIN_BEATS_PER_MIN beats per minute of usable (non-NaN) signal, and at least 3."""
    usable_min = np.isfinite(np.asarray(x, dtype=float)).sum() / fs / 60.0
    return n_beats >= max(3, MIN_BEATS_PER_MIN * usable_min)


def _require_beats(n_beats: int, x: np.ndarray, fs: float, what: str, path: str | None = None) -> None:
    """Raise InputError unless there are enough beats (:func:`_enough_beats`)."""
    if not _enough_beats(n_beats, x, fs):
        usable_min = np.isfinite(np.asarray(x, dtype=float)).sum() / fs / 60.0
        raise InputError(f"no {what} found ({n_beats} in {usable_min:.1f} min of signal): "
                         "is this channel the right kind?", path)


# ------------------------------------------------------------------------------------------ helpers


def _check(x: np.ndarray, fs: float, what: str, path: str | None = None) -> np.ndarray:
    """As float64 1-D; InputError when the rate is absurd or the signal is empty, all NaN or flat."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not (np.isfinite(fs) and fs > 0):
        raise InputError(f"invalid {what} sampling rate {fs} Hz", path)
    finite = np.isfinite(x)
    if x.size < 10 * fs or finite.mean() < 0.5:
        raise InputError(f"{what} too short or mostly missing ({finite.sum() / fs:.0f} s usable)", path)
    if np.ptp(x[finite]) == 0:
        raise InputError(f"{what} is flat (constant); no beats can be found", path)
    return x


def _bridge(x: np.ndarray) -> np.ndarray:
    """NaNs replaced by linear interpolation (filters need finite input; the gap is masked later)."""
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    if bad.all():
        return np.zeros_like(x)
    good = np.flatnonzero(~bad)
    x = x.copy()
    x[bad] = np.interp(np.flatnonzero(bad), good, x[good])
    return x


def _resample(x: np.ndarray, fs: float, fs_out: float, n_out: int | None = None) -> np.ndarray:
    """Polyphase resampling (anti-aliased) to ``fs_out``; the level is removed first so the ends do not ring.

    ``n_out`` trims or edge-pads the result to an exact length.
    """
    from scipy.signal import resample_poly

    ratio = Fraction(fs_out / fs).limit_denominator(1000)
    x = x - np.median(x)
    y = x if ratio == 1 else resample_poly(x, ratio.numerator, ratio.denominator)
    return y if n_out is None else fit_length(y, n_out)


def _clean_ecg(ecg: np.ndarray, fs: float, path: str | None = None) -> tuple[np.ndarray, float]:
    """NeuroKit2 ``ecg_clean`` at min(fs, MAX_ECG_FS) Hz; returns (cleaned, its rate in Hz)."""
    import neurokit2 as nk

    x = _bridge(_check(ecg, fs, "ECG", path))
    fs_c = min(fs, MAX_ECG_FS)
    if fs_c != fs:
        x = _resample(x, fs, fs_c)
        fs_c = float(fs * Fraction(fs_c / fs).limit_denominator(1000))
    return np.asarray(nk.ecg_clean(x, sampling_rate=fs_c), dtype=float), fs_c


def fit_length(x: np.ndarray, n: int, fill: float | None = None) -> np.ndarray:
    """``x`` cut or extended to ``n`` samples: extended with its last value, or with ``fill`` when given.

    Resampled series come out a sample longer or shorter than the grid; this puts them on it.
    """
    if x.size == n:
        return x
    if x.size > n:
        return x[:n]
    if fill is None:
        return np.pad(x, (0, n - x.size), mode="edge")
    return np.pad(x, (0, n - x.size), constant_values=fill)


def _n_out(n: int, fs: float) -> int:
    """Samples at GRID_FS for a signal of n samples at fs."""
    return max(1, round(n * GRID_FS / fs))


def _missing_out(x: np.ndarray, fs: float) -> np.ndarray:
    """Missing-sample mask at GRID_FS, shape (_n_out(len(x), fs),): any NaN within an output sample's span."""
    bad = ~np.isfinite(np.asarray(x, dtype=float).reshape(-1))
    n = _n_out(bad.size, fs)
    out = np.zeros(n, bool)
    if bad.any():
        idx = np.flatnonzero(bad)
        out[np.clip(np.floor(idx * GRID_FS / fs).astype(int), 0, n - 1)] = True
    return out


def _beat_rate(peaks: np.ndarray, fs: float, n_out: int) -> np.ndarray:
    """Instantaneous beat rate (beats/min) on the grid, shape (n_out,).

    The same series as NeuroKit2 ``signal_rate(peaks, fs, desired_length=...)`` (each beat carries
    60 / its interval from the previous beat, monotone cubic interpolation, the first beat the mean),
    but interpolated from the exact beat times straight onto the grid: ``signal_rate`` needs the
    peaks as integer indices at the output rate, and rounding them to 0.1 s would add up to 10 %
    jitter to every interval (respiratory sinus arrhythmia is a few %). Intervals outside
    HR_RANGE (detection errors, gaps) are dropped before interpolation.
    """
    t = np.asarray(peaks) / fs
    if t.size < 3:
        return np.full(n_out, np.nan)
    ibi = np.diff(t)
    ok = np.concatenate(([True], (ibi >= 60 / HR_RANGE[1]) & (ibi <= 60 / HR_RANGE[0])))
    rate = 60.0 / np.concatenate(([np.mean(ibi)], ibi))
    return _beat_series(t[ok], rate[ok], n_out) if ok.sum() >= 2 else np.full(n_out, np.nan)


def _beat_series(times_s: np.ndarray, values: np.ndarray, n_out: int) -> np.ndarray:
    """Per-beat values interpolated (monotone cubic) onto the grid, held constant beyond the ends."""
    from scipy.interpolate import PchipInterpolator

    t_out = np.arange(n_out) / GRID_FS
    times_s, keep = np.unique(times_s, return_index=True)
    values = np.asarray(values, dtype=float)[keep]
    if times_s.size < 2:
        return np.full(n_out, values[0] if values.size else np.nan)
    y = PchipInterpolator(times_s, values, extrapolate=False)(t_out)
    y[t_out < times_s[0]] = values[0]
    y[t_out > times_s[-1]] = values[-1]
    return y


def _bandpass(x: np.ndarray, fs: float, band: tuple[float, float] = RESP_BAND, order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth band-pass (NeuroKit2 ``signal_filter``)."""
    import neurokit2 as nk

    x = _bridge(np.asarray(x, dtype=float))
    return np.asarray(nk.signal_filter(x, sampling_rate=fs, lowcut=band[0], highcut=band[1], order=order),
                      dtype=float)


def _nan_where(x: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``x`` with NaN where ``missing`` (lengths are matched to ``missing``)."""
    x = np.asarray(x, dtype=float)
    x = fit_length(x, missing.size)
    if missing.any():
        x = x.copy()
        x[missing] = np.nan
    return x
