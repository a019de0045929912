"""Established heuristic respiration surrogates from ECG and PPG, to compare the model against.

Each surrogate is a waveform at :data:`OUT_FS` whose breaths :func:`resp_sep.rate.breathing_rate`
counts exactly as it counts those of the model's output and of the reference channel.

ECG
    ``nk_ecg_rsp_<method>``: NeuroKit2 ``ecg_rsp`` (a band-pass of the instantaneous heart rate,
    i.e. respiratory sinus arrhythmia) for ``vangent2019``, ``charlton2016``, ``soni2019`` and
    ``sarkar2015``; ``ecg_r_amplitude``: R-wave amplitude (ECG-derived respiration, EDR).
PPG
    ``ppg_bandpass``: the PPG itself band-passed to the breathing band (baseline modulation, RIIV);
    ``ppg_pulse_amplitude``: peak-minus-foot amplitude per beat (RIAV); ``ppg_pulse_rate``: pulse
    rate band-passed like ``sarkar2015`` (RIFV).

Beat-derived series (heart rate, amplitudes) change once per beat, so they are interpolated onto a
uniform :data:`OUT_FS` grid; their content of interest is below 1 Hz, so nothing is lost by not
working at the ECG's own rate, and an 8-hour night costs seconds. Samples where the input was
missing (NaN) are NaN in the output, so that the rate scorer flags those windows.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np

from resp_sep.errors import InputError

#: rate (Hz) of every surrogate waveform returned.
OUT_FS = 10.0
#: breathing band (Hz) of the amplitude and PPG surrogates: 6-42 breaths/min.
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

Surrogates = dict[str, tuple[np.ndarray, float]]


def ecg_rsp_baselines(ecg: np.ndarray, fs: float, *, peaks: np.ndarray | None = None) -> Surrogates:
    """NeuroKit2 ``ecg_rsp`` surrogates: the band-passed heart rate, one per method.

    Parameters
    ----------
    ecg : numpy.ndarray, shape (n_samples,)
        ECG in any unit; NaN marks missing samples.
    fs : float
        Sampling rate (Hz).
    peaks : numpy.ndarray, optional
        R-peak sample indices (at ``fs``) when already known; detected otherwise.

    Returns
    -------
    dict
        ``"nk_ecg_rsp_<method>"`` -> ``(waveform, OUT_FS)``, waveform shape (round(n_samples * OUT_FS / fs),).

    Raises
    ------
    InputError
        When no heart beats can be found.
    """
    import neurokit2 as nk

    if peaks is None:
        peaks = ecg_r_peaks(ecg, fs)
    missing = _missing_out(ecg, fs)
    rate = _beat_rate(peaks, fs, missing.size)
    out = {}
    for method in ECG_RSP_METHODS:
        rsp = np.asarray(nk.ecg_rsp(rate, sampling_rate=OUT_FS, method=method), dtype=float)
        out[f"nk_ecg_rsp_{method}"] = (_nan_where(rsp, missing), OUT_FS)
    return out


def ecg_r_amplitude_edr(ecg: np.ndarray, fs: float, *, peaks: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """R-wave amplitude EDR: the cleaned ECG at each R-peak, interpolated and band-passed.

    Parameters
    ----------
    ecg : numpy.ndarray, shape (n_samples,)
        ECG in any unit; NaN marks missing samples.
    fs : float
        Sampling rate (Hz).
    peaks : numpy.ndarray, optional
        R-peak sample indices (at ``fs``) when already known.

    Returns
    -------
    waveform : numpy.ndarray, shape (round(n_samples * OUT_FS / fs),)
        Amplitude series band-passed to :data:`RESP_BAND` (ECG units).
    fs_out : float
        :data:`OUT_FS`.
    """
    if peaks is None:
        peaks = ecg_r_peaks(ecg, fs)
    clean, fs_c = _clean_ecg(ecg, fs)
    idx = np.clip(np.round(peaks * fs_c / fs).astype(int), 0, clean.size - 1)
    missing = _missing_out(ecg, fs)
    series = _beat_series(peaks / fs, clean[idx], missing.size)
    return _nan_where(_bandpass(series, OUT_FS), missing), OUT_FS


def ppg_bandpass(ppg: np.ndarray, fs: float) -> tuple[np.ndarray, float]:
    """The PPG band-passed to :data:`RESP_BAND` and resampled to :data:`OUT_FS` (RIIV).

    Parameters
    ----------
    ppg : numpy.ndarray, shape (n_samples,)
        PPG in any unit; NaN marks missing samples.
    fs : float
        Sampling rate (Hz).

    Returns
    -------
    waveform : numpy.ndarray, shape (round(n_samples * OUT_FS / fs),)
    fs_out : float
        :data:`OUT_FS`.
    """
    x = _check(ppg, fs, "PPG")
    y = _resample(_bridge(x), fs, OUT_FS)
    return _nan_where(_bandpass(y, OUT_FS), _missing_out(ppg, fs)), OUT_FS


def ppg_pulse_amplitude(ppg: np.ndarray, fs: float, *, beats: tuple[np.ndarray, np.ndarray] | None = None
                        ) -> tuple[np.ndarray, float]:
    """Pulse amplitude (systolic peak minus the preceding foot, per beat), interpolated and band-passed (RIAV).

    Parameters
    ----------
    ppg : numpy.ndarray, shape (n_samples,)
        PPG in any unit; NaN marks missing samples.
    fs : float
        Sampling rate (Hz).
    beats : (peak_times_s, amplitudes), optional
        From :func:`ppg_beats` when already computed.

    Returns
    -------
    waveform : numpy.ndarray, shape (round(n_samples * OUT_FS / fs),)
    fs_out : float
        :data:`OUT_FS`.

    Raises
    ------
    InputError
        When no pulses can be found.
    """
    times, amp = ppg_beats(ppg, fs) if beats is None else beats
    missing = _missing_out(ppg, fs)
    return _nan_where(_bandpass(_beat_series(times, amp, missing.size), OUT_FS), missing), OUT_FS


def ppg_pulse_rate(ppg: np.ndarray, fs: float, *, beats: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, float]:
    """Pulse rate band-passed to :data:`RESP_BAND` (RIFV, the PPG twin of ``sarkar2015``).

    Parameters and returns as :func:`ppg_pulse_amplitude`.
    """
    times, _ = ppg_beats(ppg, fs) if beats is None else beats
    missing = _missing_out(ppg, fs)
    rate = _beat_rate(np.round(times * fs).astype(int), fs, missing.size)
    return _nan_where(_bandpass(rate, OUT_FS), missing), OUT_FS


def all_baselines(signal: np.ndarray, fs: float, kind: str = "ecg") -> Surrogates:
    """Every surrogate for one ECG or PPG channel.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_samples,)
        The ECG or PPG.
    fs : float
        Sampling rate (Hz).
    kind : {"ecg", "ppg"}

    Returns
    -------
    dict
        name -> ``(waveform, fs_out)``; beats are detected once and shared by the surrogates.
    """
    if kind == "ecg":
        peaks = ecg_r_peaks(signal, fs)
        out = ecg_rsp_baselines(signal, fs, peaks=peaks)
        out["ecg_r_amplitude"] = ecg_r_amplitude_edr(signal, fs, peaks=peaks)
        return out
    if kind == "ppg":
        beats = ppg_beats(signal, fs)
        return {
            "ppg_bandpass": ppg_bandpass(signal, fs),
            "ppg_pulse_amplitude": ppg_pulse_amplitude(signal, fs, beats=beats),
            "ppg_pulse_rate": ppg_pulse_rate(signal, fs, beats=beats),
        }
    raise ValueError(f"kind must be 'ecg' or 'ppg' (got {kind!r})")


# --- beat detection ---------------------------------------------------------------------------

def ecg_r_peaks(ecg: np.ndarray, fs: float) -> np.ndarray:
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

    clean, fs_c = _clean_ecg(ecg, fs)
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
    _require_beats(peaks.size, ecg, fs, "ECG R-peaks")
    return peaks


def ppg_beats(ppg: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
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

    x = _check(ppg, fs, "PPG")
    fs_p = min(fs, PPG_FS)
    y = _resample(_bridge(x), fs, fs_p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean = np.asarray(nk.ppg_clean(y, sampling_rate=fs_p), dtype=float)
            peaks = np.asarray(nk.ppg_findpeaks(clean, sampling_rate=fs_p)["PPG_Peaks"], dtype=int)
    except Exception:  # noqa: BLE001 - NeuroKit raises assorted errors on signals without pulses
        peaks = np.zeros(0, int)
    _require_beats(peaks.size, ppg, fs, "PPG pulses")
    # the foot of each pulse: the minimum between the previous peak (or the start) and this one
    starts = np.concatenate(([0], peaks[:-1]))
    feet = np.minimum.reduceat(clean, starts) if peaks.size else np.zeros(0)
    # reduceat spans starts[i]..starts[i+1]-1 = previous peak .. this peak - 1; the last one runs to the end
    feet[-1] = clean[starts[-1]: peaks[-1] + 1].min()
    return peaks / fs_p, clean[peaks] - feet


def _enough_beats(n_beats: int, x: np.ndarray, fs: float) -> bool:
    """At least MIN_BEATS_PER_MIN beats per minute of usable (non-NaN) signal, and at least 3."""
    usable_min = np.isfinite(np.asarray(x, dtype=float)).sum() / fs / 60.0
    return n_beats >= max(3, MIN_BEATS_PER_MIN * usable_min)


def _require_beats(n_beats: int, x: np.ndarray, fs: float, what: str) -> None:
    """Raise InputError unless there are enough beats (:func:`_enough_beats`)."""
    if not _enough_beats(n_beats, x, fs):
        usable_min = np.isfinite(np.asarray(x, dtype=float)).sum() / fs / 60.0
        raise InputError(
            f"no {what} found ({n_beats} in {usable_min:.1f} min of signal): is this channel the right kind?")


# --- helpers ----------------------------------------------------------------------------------

def _check(x: np.ndarray, fs: float, what: str) -> np.ndarray:
    """As float64 1-D; InputError when the rate is absurd or the signal is empty, all NaN or flat."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not (np.isfinite(fs) and fs > 0):
        raise InputError(f"invalid {what} sampling rate {fs} Hz")
    finite = np.isfinite(x)
    if x.size < 10 * fs or finite.mean() < 0.5:
        raise InputError(f"{what} too short or mostly missing ({finite.sum() / fs:.0f} s usable)")
    if np.ptp(x[finite]) == 0:
        raise InputError(f"{what} is flat (constant); no beats can be found")
    return x


def _bridge(x: np.ndarray) -> np.ndarray:
    """NaNs replaced by linear interpolation (filters need finite input; the gap is masked later)."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    good = np.flatnonzero(~bad)
    x = x.copy()
    x[bad] = np.interp(np.flatnonzero(bad), good, x[good])
    return x


def _resample(x: np.ndarray, fs: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling (anti-aliased) to ``fs_out``; the level is removed first so the ends do not ring."""
    from scipy.signal import resample_poly

    ratio = Fraction(fs_out / fs).limit_denominator(1000)
    x = x - np.median(x)
    if ratio == 1:
        return x
    return resample_poly(x, ratio.numerator, ratio.denominator)


def _clean_ecg(ecg: np.ndarray, fs: float) -> tuple[np.ndarray, float]:
    """NeuroKit2 ``ecg_clean`` at min(fs, MAX_ECG_FS) Hz; returns (cleaned, its rate in Hz)."""
    import neurokit2 as nk

    x = _bridge(_check(ecg, fs, "ECG"))
    fs_c = min(fs, MAX_ECG_FS)
    if fs_c != fs:
        x = _resample(x, fs, fs_c)
        fs_c = fs * Fraction(fs_c / fs).limit_denominator(1000)
        fs_c = float(fs_c)
    return np.asarray(nk.ecg_clean(x, sampling_rate=fs_c), dtype=float), fs_c


def _n_out(n: int, fs: float) -> int:
    """Samples at OUT_FS for a signal of n samples at fs."""
    return max(1, round(n * OUT_FS / fs))


def _missing_out(x: np.ndarray, fs: float) -> np.ndarray:
    """Missing-sample mask at OUT_FS, shape (_n_out(len(x), fs),): any NaN within an output sample's span."""
    bad = ~np.isfinite(np.asarray(x, dtype=float).reshape(-1))
    n = _n_out(bad.size, fs)
    if not bad.any():
        return np.zeros(n, bool)
    idx = np.flatnonzero(bad)
    out = np.zeros(n, bool)
    out[np.clip(np.floor(idx * OUT_FS / fs).astype(int), 0, n - 1)] = True
    return out


def _beat_rate(peaks: np.ndarray, fs: float, n_out: int) -> np.ndarray:
    """Instantaneous beat rate (beats/min) at OUT_FS, shape (n_out,).

    The same series as NeuroKit2 ``signal_rate(peaks, fs, desired_length=...)`` (each beat carries
    60 / its interval from the previous beat, monotone cubic interpolation, the first beat the mean),
    but interpolated from the exact beat times straight onto the OUT_FS grid: ``signal_rate`` needs
    the peaks as integer indices at the output rate, and rounding them to 0.1 s would add up to 10 %
    jitter to every interval (respiratory sinus arrhythmia is a few %); interpolating at the ECG rate
    and decimating would cost 25x the memory and time for the same result. Intervals outside
    HR_RANGE (detection errors, gaps) are dropped before interpolation.
    """
    t = peaks / fs
    ibi = np.diff(t)
    ok = np.concatenate(([True], (ibi >= 60 / HR_RANGE[1]) & (ibi <= 60 / HR_RANGE[0])))
    rate = 60.0 / np.concatenate(([np.mean(ibi)], ibi))
    return _beat_series(t[ok], rate[ok], n_out) if ok.sum() >= 2 else np.full(n_out, np.nan)


def _beat_series(times_s: np.ndarray, values: np.ndarray, n_out: int) -> np.ndarray:
    """Per-beat values interpolated (monotone cubic) onto the OUT_FS grid, held constant beyond the ends."""
    from scipy.interpolate import PchipInterpolator

    t_out = np.arange(n_out) / OUT_FS
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
    if x.size != missing.size:
        x = np.resize(x, missing.size) if x.size > missing.size else np.pad(x, (0, missing.size - x.size), "edge")
    if missing.any():
        x = x.copy()
        x[missing] = np.nan
    return x
