"""How strongly breathing shows in an ECG or PPG: the same statistics on real and simulated recordings.

A simulator is only useful for training if breathing is as visible (and as hidden) in its
signals as in real ones. :func:`modulation_sources` extracts the classic respiratory modulations
of one recording, each as a waveform at :data:`resp_sep.baselines.OUT_FS` (10 Hz):

``ecg_baseline``
    Baseline wander: the ECG after a 0.6-s running median (removes the QRS and most of the T wave),
    resampled and band-passed to the breathing band (additive modulation).
``ecg_r_amplitude``
    R-wave amplitude per beat (amplitude modulation; :func:`resp_sep.baselines.ecg_r_amplitude_edr`).
``ecg_rsa``
    Instantaneous heart rate from the R-R intervals (respiratory sinus arrhythmia).
``ppg_baseline``
    The PPG band-passed to the breathing band (:func:`resp_sep.baselines.ppg_bandpass`, RIIV).
``ppg_amplitude``
    Pulse amplitude per beat (:func:`resp_sep.baselines.ppg_pulse_amplitude`, RIAV).

:func:`window_abs_r` then gives the median |Pearson r| between each modulation and a respiration
reference over non-overlapping 60-s windows, both band-passed to 0.1-0.7 Hz.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy import signal as sps

from resp_sep import baselines as bl

#: names of the modulations, in table order
SOURCES = ("ecg_baseline", "ecg_r_amplitude", "ecg_rsa", "ppg_baseline", "ppg_amplitude")


def modulation_sources(ecg: np.ndarray | None, ecg_fs: float, ppg: np.ndarray | None = None,
                       ppg_fs: float = 0.0) -> dict[str, np.ndarray]:
    """Respiratory modulations of one recording (see module docstring).

    Parameters
    ----------
    ecg : ndarray or None
        ECG samples (any unit) at ``ecg_fs`` Hz.
    ppg : ndarray or None
        PPG samples at ``ppg_fs`` Hz.

    Returns
    -------
    dict of str to ndarray
        Each a 10-Hz waveform band-passed to 0.1-0.7 Hz; a modulation that cannot be computed
        (no beats found, channel absent) is left out.
    """
    out: dict[str, np.ndarray] = {}
    if ecg is not None:
        x = np.asarray(ecg, dtype=np.float64)
        k = int(round(0.6 * ecg_fs)) | 1
        base = ndimage.median_filter(x, size=k, mode="nearest")
        out["ecg_baseline"] = bl._bandpass(bl._resample(base, ecg_fs, bl.OUT_FS), bl.OUT_FS)
        try:
            peaks = bl.ecg_r_peaks(x, ecg_fs)
            out["ecg_r_amplitude"] = bl.ecg_r_amplitude_edr(x, ecg_fs, peaks=peaks)[0]
            n = out["ecg_baseline"].size
            out["ecg_rsa"] = bl._bandpass(bl._beat_rate(peaks, ecg_fs, n), bl.OUT_FS)
        except Exception:  # noqa: BLE001 - no beats: those modulations are simply absent
            pass
    if ppg is not None:
        y = np.asarray(ppg, dtype=np.float64)
        out["ppg_baseline"] = bl.ppg_bandpass(y, ppg_fs)[0]
        try:
            out["ppg_amplitude"] = bl.ppg_pulse_amplitude(y, ppg_fs)[0]
        except Exception:  # noqa: BLE001
            pass
    return out


def window_abs_r(source: np.ndarray, ref: np.ndarray, fs: float = bl.OUT_FS, window_s: float = 60.0) -> float:
    """Median |Pearson r| between two equally sampled waveforms over non-overlapping windows.

    Parameters
    ----------
    source : ndarray
        A modulation (already band-passed).
    ref : ndarray
        The respiration reference at the same rate (band-passed here to 0.1-0.7 Hz).

    Returns
    -------
    float
        NaN when no window has variance in both.
    """
    n = min(source.size, ref.size)
    sos = sps.butter(2, bl.RESP_BAND, btype="band", fs=fs, output="sos")
    r = sps.sosfiltfilt(sos, np.nan_to_num(ref[:n]))
    s = np.nan_to_num(source[:n])
    w = int(window_s * fs)
    rs = []
    for a in range(0, n - w + 1, w):
        u, v = s[a:a + w], r[a:a + w]
        if u.std() > 0 and v.std() > 0:
            rs.append(abs(np.corrcoef(u, v)[0, 1]))
    return float(np.median(rs)) if rs else float("nan")


def recording_stats(ecg, ecg_fs, ppg, ppg_fs, ref, ref_fs, window_s: float = 60.0) -> dict[str, float]:
    """:func:`window_abs_r` of every modulation of one recording against its reference."""
    ref10 = bl._resample(np.nan_to_num(np.asarray(ref, dtype=np.float64)), ref_fs, bl.OUT_FS)
    return {k: window_abs_r(v, ref10, bl.OUT_FS, window_s)
            for k, v in modulation_sources(ecg, ecg_fs, ppg, ppg_fs).items()}
