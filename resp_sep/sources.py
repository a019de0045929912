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
    (NeuroKit2 ``ecg_rsp`` for ``vangent2019``, ``charlton2016``, ``soni2019``, ``sarkar2015``;
    :func:`resp_sep.filters.ecg_rsp`).
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
night costs seconds. Beats are detected once per channel, block by block (:mod:`resp_sep.beats`),
and shared by the sources that need them (:class:`SignalContext`).

Missing signal is marked, never filled in: a source is NaN on the grid where its channel has
missing samples or a constant run (:mod:`resp_sep.chunks`: a lead off, a sensor disconnected), and
the beat-derived sources also where no heart beat was found for :data:`MAX_BEAT_GAP_S` (an
interpolated heart rate or amplitude across such a stretch would be filler, not breathing).

References: Charlton et al., "An assessment of algorithms to estimate respiratory rate from the
electrocardiogram and photoplethysmogram", Physiol. Meas. 37 (2016) 610; Charlton et al.,
"Breathing rate estimation from the electrocardiogram and photoplethysmogram: a review", IEEE Rev.
Biomed. Eng. 11 (2018) 2; Karlen et al., "Multiparameter respiratory rate estimation from the
photoplethysmogram", IEEE TBME 60 (2013) 1946.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from resp_sep.errors import InputError, RespSepError

#: rate (Hz) of every source waveform: breathing lies below 1 Hz.
GRID_FS = 10.0
#: breathing band (Hz) of every heuristic source: 6-42 breaths/min.
RESP_BAND = (0.1, 0.7)
#: heart/pulse rates (beats/min) outside this range are detection errors, bridged by interpolation.
HR_RANGE = (25.0, 220.0)
#: beat-derived sources are missing between two beats further apart than this (s), and before the
#: first / after the last beat when the channel starts or ends that long without one: no pulse was
#: found there (20 beats/min at most), so there is nothing to interpolate.
MAX_BEAT_GAP_S = 3.0
#: shortest channel (s) a source is computed on
MIN_SOURCE_S = 10.0
#: grid samples interpolated at once (bounds the temporaries of an interpolation over a 48-h night)
GRID_CHUNK = 1 << 16
ECG_RSP_METHODS = ("vangent2019", "charlton2016", "soni2019", "sarkar2015")
#: half-width (s) of the QRS area window around each R peak.
QRS_HALF_S = 0.05
#: where the S wave is searched after the R peak (s).
S_SEARCH_S = 0.08


# --------------------------------------------------------------------------------- the interface


class SignalContext:
    """One ECG or PPG channel and what its sources share, computed once, on demand, block by block.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,), optional
        The ECG or PPG in any unit (NaN marks missing samples), when it is in memory; or
    channel : resp_sep.io.Channel, optional
        The channel, read by ranges (a recording's channel: never held whole).
    fs : float
        Sampling rate (Hz) of ``x`` (a channel knows its own).
    kind : {"ecg", "ppg"}
    path : str, optional
        The recording, for error messages.
    stats : resp_sep.chunks.ChannelStats, optional
        The channel's :func:`~resp_sep.chunks.scan`, when the caller has it.
    separator : callable, optional
        ``separator(kind)`` returns a loaded :class:`resp_sep.separate.Separator` for ``kind``
        (called only when a separator source runs, so heuristics never import torch).
    separator_options : dict
        Extra keyword arguments of :func:`resp_sep.stream.extract_stream` (``hop``, ``batch_size``, ``progress``).
    block_s, margin_s : float
        Block core and margin (s) of the passes over the channel (:mod:`resp_sep.beats`).
    cancel : threading.Event, optional
        Stop after the current block when set (another input failed or the run was interrupted).
    tick : callable, optional
        ``tick(fraction)`` as the beat pass advances (progress).
    """

    def __init__(self, x: np.ndarray | None = None, fs: float | None = None, kind: str = "ecg",
                 path: str | None = None, *, channel=None, stats=None, separator: Callable[[str], object] | None = None,
                 separator_options: dict | None = None, block_s: float | None = None, margin_s: float | None = None,
                 cancel=None, tick: Callable[[float], None] | None = None):
        from resp_sep.chunks import BLOCK_S, MARGIN_S

        if kind not in ("ecg", "ppg"):
            raise ValueError(f"kind must be 'ecg' or 'ppg' (got {kind!r})")
        if channel is None:
            from resp_sep.io import recording_from_arrays

            if x is None or fs is None:
                raise ValueError("give the samples and their rate (x, fs) or a channel")
            channel = recording_from_arrays({kind.upper(): (np.asarray(x, dtype=np.float64).reshape(-1), fs)},
                                            name=path or "<array>").channels[0]
        self.channel, self.kind, self.path = channel, kind, path
        self.fs = float(channel.fs)
        self.separator = separator
        self.separator_options = dict(separator_options or {})
        self.block_s = BLOCK_S if block_s is None else float(block_s)
        self.margin_s = MARGIN_S if margin_s is None else float(margin_s)
        self.cancel, self.tick = cancel, tick
        self._cache: dict = {}
        if stats is not None:
            self._cache["stats"] = stats

    @property
    def n(self) -> int:
        """Samples of the channel."""
        return int(self.channel.n_samples)

    @property
    def n_grid(self) -> int:
        """Samples on the :data:`GRID_FS` grid covering the input."""
        return _n_out(self.n, self.fs)

    @property
    def duration_s(self) -> float:
        return self.n / self.fs

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
    def stats(self):
        """The channel's :class:`~resp_sep.chunks.ChannelStats` (one reading pass)."""
        from resp_sep.chunks import scan

        whole = int((self.block_s + 2 * self.margin_s) * self.fs)
        return self.cached("stats", lambda: scan(self.channel, whole_below=whole))

    def checked(self):
        """:attr:`stats`, after the input checks (:func:`resp_sep.chunks.check`)."""
        from resp_sep.chunks import check

        def run():
            st = self.stats
            check(st, self.channel.label, self.path, min_s=MIN_SOURCE_S, what=self.kind.upper())
            return st

        return self.cached("checked", run)

    @property
    def missing(self) -> np.ndarray:
        """Missing-input mask on the grid, shape (n_grid,): missing samples and constant runs."""
        from resp_sep.chunks import missing_on_grid

        return self.cached("missing", lambda: missing_on_grid(self.stats, self.n_grid, GRID_FS))

    def beat_gaps(self) -> np.ndarray:
        """Mask on the grid, shape (n_grid,): stretches without a beat for more than :data:`MAX_BEAT_GAP_S`."""
        from resp_sep.chunks import missing_on_grid

        def run():
            t = self.r_peaks() / self.fs if self.kind == "ecg" else self.ppg_beats()[0]
            return missing_on_grid(self.stats, self.n_grid, GRID_FS, extra=_gap_runs(t, self.n, self.fs))

        return self.cached("beat_gaps", run)

    def _beats(self):
        from resp_sep import beats

        fn = beats.ecg_beats if self.kind == "ecg" else beats.ppg_beats
        return self.cached("beats", lambda: fn(self.channel, self.checked(), path=self.path, grid_fs=GRID_FS,
                                               block_s=self.block_s, margin_s=self.margin_s, cancel=self.cancel,
                                               tick=self.tick))

    def r_peaks(self) -> np.ndarray:
        """R-peak sample indices at ``fs``, artefact-corrected: the beat intervals (:func:`resp_sep.beats.ecg_beats`)."""
        return self._beats().r_peaks

    def r_waves(self) -> np.ndarray:
        """Detected R-peak sample indices at ``fs``, uncorrected: where beat amplitudes are read
        (:meth:`resp_sep.beats.EcgBeats.amplitude_peaks`)."""
        return self._beats().amplitude_peaks()

    def clean_ecg(self) -> tuple[object, float]:
        """The cleaned ECG (read by ranges: ``clean.take(rows)``, ``clean.n``) and its rate (Hz)."""
        b = self._beats()
        return b.clean, b.fs_clean

    def ppg_beats(self) -> tuple[np.ndarray, np.ndarray]:
        """PPG peak times (s) and pulse amplitudes (:func:`resp_sep.beats.ppg_beats`)."""
        b = self._beats()
        return b.times_s, b.amplitude

    def baseline(self) -> np.ndarray:
        """The channel resampled to the grid (median removed, NaN gaps bridged), shape (n_grid,)."""
        return fit_length(self._beats().baseline, self.n_grid)

    @property
    def notes(self) -> list[str]:
        """What the user should know about how this channel was read (a polarity flip, memory)."""
        out = []
        st = self._cache.get("stats")
        if st is not None and not isinstance(st, RespSepError):
            what = f"{self.kind.upper()} '{self.channel.label}'"
            if st.n_flat:
                out.append(f"{what}: {_minutes(st.n_flat / st.fs)} of constant signal (lead off or sensor "
                           f"disconnected?) marked missing")
            if st.n_finite < st.n:
                out.append(f"{what}: {_minutes((st.n - st.n_finite) / st.fs)} of missing samples marked missing")
        b = self._cache.get("beats")
        if b is None or isinstance(b, RespSepError):
            return out
        out.extend(b.notes)
        if getattr(b, "inverted", False):
            out.append(f"{self.kind.upper()} '{self.channel.label}' read inverted (its QRS complexes point down)")
        if getattr(b, "detector", "neurokit") != "neurokit":
            out.append(f"{self.kind.upper()} R-peaks by {b.detector} (the neurokit detector found too few)")
        return out

    def release(self) -> None:
        """Drop what only the sources needed (the grid-length baseline and heart rate); keep the beats."""
        b = self._cache.get("beats")
        if b is not None and not isinstance(b, RespSepError):
            b.baseline = None
        self._cache.pop("beat_rate", None)

    def close(self) -> None:
        """Release the temporary file of the cleaned signal."""
        b = self._cache.get("beats")
        if b is not None and not isinstance(b, RespSepError) and hasattr(b.clean if hasattr(b, "clean") else None,
                                                                          "close"):
            b.clean.close()


def _minutes(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{s / 60:.1f} min"


def _gap_runs(times_s: np.ndarray, n: int, fs: float) -> np.ndarray:
    """Channel-sample runs ``[start, end)`` with no beat for more than :data:`MAX_BEAT_GAP_S`."""
    t = np.concatenate(([0.0], np.asarray(times_s, dtype=float), [n / fs]))
    gap = np.flatnonzero(np.diff(t) > MAX_BEAT_GAP_S)
    if not gap.size:
        return np.zeros((0, 2), np.int64)
    return np.stack([np.ceil(t[gap] * fs), np.floor(t[gap + 1] * fs)], axis=1).astype(np.int64)


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
    beats : bool
        Derived from the heart beats (missing where none were found, :meth:`SignalContext.beat_gaps`).
    """

    name: str
    kind: str
    fn: Callable[[SignalContext], np.ndarray]
    description: str
    fusion: bool = True
    model: bool = False
    family: str = ""
    beats: bool = True


#: every source by name, in a stable order (ECG first).
SOURCES: dict[str, Source] = {}


#: the modulation families (:attr:`Source.family`), per channel: the mechanism by which breathing
#: reaches the signal (Charlton et al. 2018: baseline wander, amplitude and frequency modulation),
#: and the separator as a family of its own.
FAMILIES = ("ecg_rate", "ecg_amplitude", "ecg_baseline", "ppg_rate", "ppg_amplitude", "ppg_baseline",
            "separator_ecg", "separator_ppg")


def register(name: str, kind: str, description: str, *, family: str, fusion: bool = True, model: bool = False,
             beats: bool = True):
    """Decorator adding a source function to :data:`SOURCES`."""
    if family not in FAMILIES:
        raise ValueError(f"source {name!r}: unknown family {family!r}")

    def deco(fn):
        if name in SOURCES:
            raise ValueError(f"source {name!r} registered twice")
        SOURCES[name] = Source(name, kind, fn, description, fusion, model, family, beats)
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
    ctx.checked()
    wave = _nan_where(np.asarray(src.fn(ctx), dtype=np.float64), ctx.beat_gaps() if src.beats else ctx.missing)
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
    from resp_sep.parallel import release_memory

    outputs, failures = {}, {}
    for name in names:
        try:
            outputs[name] = compute_source(name, ctx)
        except RespSepError as e:
            if e.exit_code not in (3,):  # model and usage errors are the user's to fix: stop
                raise
            failures[name] = e.problem
        # each source's temporaries (whole-grid interpolations and filters) back to the system before
        # the next: left in the C heap they add up to more than the sources themselves over a long night
        release_memory()
    return outputs, failures


def all_heuristics(x: np.ndarray, fs: float, kind: str, path: str | None = None) -> dict[str, SourceOutput]:
    """Every heuristic (model-free) source of one ECG or PPG channel; beats are detected once.

    Raises
    ------
    InputError
        When none of them can run (the first reason is given).
    """
    ctx = SignalContext(x, fs, kind, path=path)
    try:
        out, failures = compute_sources(source_names(kind, heuristics_only=True), ctx)
    finally:
        ctx.close()
    if not out:
        raise InputError(next(iter(failures.values()), "no source could run"), path)
    return out


# ----------------------------------------------------------------------------------- ECG sources


def _rsa(method: str):
    def fn(ctx: SignalContext) -> np.ndarray:
        from resp_sep.filters import ecg_rsp

        rate = ctx.cached("beat_rate", lambda: _beat_rate(ctx.r_peaks(), ctx.fs, ctx.n_grid))
        if not np.isfinite(rate).any():
            raise InputError("no usable beat intervals", ctx.path)
        return ecg_rsp(_bridge(rate), GRID_FS, method)

    return fn


for _m in ECG_RSP_METHODS:
    register(f"ecg_rsa_{_m}", "ecg", f"heart rate (RSA), NeuroKit2 ecg_rsp method {_m}", family="ecg_rate",
             fusion=(_m == "sarkar2015"))(_rsa(_m))


#: beats whose surroundings are gathered at once (the rows are independent: the same values as all at
#: once, with temporaries bounded whatever the recording's length)
BEAT_CHUNK = 8192


def _beat_values(ctx: SignalContext, lo_s: float, hi_s: float, fn: Callable[[np.ndarray, float], np.ndarray]) -> np.ndarray:
    """``fn(rows, fs_c)`` of the cleaned ECG around every R wave (:meth:`SignalContext.r_waves`), from ``lo_s``
    to ``hi_s`` (s), rows of shape (beats, samples), :data:`BEAT_CHUNK` beats at a time; one value per beat.

    Amplitudes are read where the R waves were detected, never at artefact-corrected positions: Kubios'
    correction moves a beat next to an ectopic one to the middle of its neighbours and inserts missed
    ones, where the ECG is near its baseline, and each read as a deep dip (intervals are another
    matter: the heart-rate sources use the corrected beats). The beats Kubios marks are kept:
    leaving them out was no better on the development recordings (docs/method.md).
    """
    clean, fs_c = ctx.clean_ecg()
    peaks = ctx.r_waves()
    idx = np.round(peaks * fs_c / ctx.fs).astype(int)
    offs = np.arange(int(round(lo_s * fs_c)), int(round(hi_s * fs_c)) + 1)
    parts = [fn(clean.take(np.clip(idx[a:a + BEAT_CHUNK, None] + offs[None, :], 0, clean.n - 1)), fs_c)
             for a in range(0, idx.size, BEAT_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _per_beat(ctx: SignalContext, values: np.ndarray) -> np.ndarray:
    """One value per R wave (:meth:`SignalContext.r_waves`), interpolated onto the grid and band-passed to
    :data:`RESP_BAND`."""
    return _bandpass(_beat_series(ctx.r_waves() / ctx.fs, values, ctx.n_grid), GRID_FS)


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


@register("ecg_baseline", "ecg", "baseline wander (the ECG low-passed to the breathing band)", family="ecg_baseline",
          beats=False)
def _ecg_baseline(ctx: SignalContext) -> np.ndarray:
    ctx.r_peaks()  # a channel without heart beats is not an ECG, whatever its wander
    return _bandpass(ctx.baseline(), GRID_FS)


# ----------------------------------------------------------------------------------- PPG sources


@register("ppg_baseline", "ppg", "PPG intensity (the PPG band-passed to the breathing band, RIIV)", family="ppg_baseline",
          beats=False)
def _ppg_baseline(ctx: SignalContext) -> np.ndarray:
    ctx.ppg_beats()  # a channel without pulses is not a PPG
    return _bandpass(ctx.baseline(), GRID_FS)


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
    """The separator's respiration of the channel, streamed: segments read as they are needed
    (:func:`resp_sep.stream.extract_stream`), never the whole channel."""
    from resp_sep.chunks import Bridged
    from resp_sep.stream import extract_stream

    if ctx.separator is None:
        raise ValueError("this context has no separator loader")
    st = ctx.checked()
    sep = ctx.separator(ctx.kind)
    y = extract_stream(sep, Bridged(ctx.channel, st), st.n, ctx.fs, out_fs=GRID_FS, path=ctx.path,
                       label=ctx.channel.label, **ctx.separator_options)
    return fit_length(np.asarray(y, dtype=np.float64), ctx.n_grid)


# Not in the default fusion set while the shipped models do not improve it: on the development
# subjects the fusion with and without them tied (docs/method.md) and they cost two thirds of the
# run time. They join when a model is given (--model) or named (--method fusion,separator_ecg).
register("separator_ecg", "ecg", "multi-encoder autoencoder, respiration encoder (shipped ECG model)",
         family="separator_ecg", fusion=False, model=True, beats=False)(_separator)
register("separator_ppg", "ppg", "multi-encoder autoencoder, respiration encoder (shipped PPG model)",
         family="separator_ppg", fusion=False, model=True, beats=False)(_separator)


# --------------------------------------------------------------------------------- beat detection


def ecg_r_peaks(ecg: np.ndarray, fs: float, path: str | None = None) -> np.ndarray:
    """R-peak sample indices (at ``fs``) of an ECG array (:func:`resp_sep.beats.ecg_beats`).

    Returns
    -------
    numpy.ndarray of int, shape (n_beats,)

    Raises
    ------
    InputError
        When no heart beats can be found (flat, missing or non-ECG signal).
    """
    ctx = SignalContext(ecg, fs, "ecg", path)
    try:
        ctx.checked()
        return ctx.r_peaks()
    finally:
        ctx.close()


def ppg_beats(ppg: np.ndarray, fs: float, path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Systolic peak times (s) and pulse amplitudes of a PPG array (:func:`resp_sep.beats.ppg_beats`).

    Returns
    -------
    times_s, amplitude : numpy.ndarray, shape (n_beats,)

    Raises
    ------
    InputError
        When no pulses can be found.
    """
    ctx = SignalContext(ppg, fs, "ppg", path)
    ctx.checked()
    return ctx.ppg_beats()


# ------------------------------------------------------------------------------------------ helpers


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

    times_s, keep = np.unique(times_s, return_index=True)
    values = np.asarray(values, dtype=float)[keep]
    if times_s.size < 2:
        return np.full(n_out, values[0] if values.size else np.nan)
    f = PchipInterpolator(times_s, values, extrapolate=False)
    y = np.empty(n_out)
    for a in range(0, n_out, GRID_CHUNK):  # evaluated a chunk at a time: the same values, small temporaries
        t = np.arange(a, min(n_out, a + GRID_CHUNK)) / GRID_FS
        v = f(t)
        v[t < times_s[0]] = values[0]
        v[t > times_s[-1]] = values[-1]
        y[a:a + t.size] = v
    return y


def _bandpass(x: np.ndarray, fs: float, band: tuple[float, float] = RESP_BAND, order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth band-pass (NeuroKit2 ``signal_filter``, :func:`resp_sep.filters.butterworth`)."""
    from resp_sep.filters import butterworth

    return butterworth(_bridge(np.asarray(x, dtype=float)), fs, lowcut=band[0], highcut=band[1], order=order)


def _nan_where(x: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``x`` with NaN where ``missing`` (lengths are matched to ``missing``)."""
    x = np.asarray(x, dtype=float)
    x = fit_length(x, missing.size)
    if missing.any():
        x = x.copy()
        x[missing] = np.nan
    return x
