"""How strongly breathing shows in an ECG or PPG: the same statistics on real and simulated recordings.

A simulator is only useful for training if breathing is as visible (and as hidden) in its
signals as in real ones. :func:`modulation_sources` takes the classic respiratory modulations of
one recording from respsep's own sources (:mod:`resp_sep.sources`: the code extraction runs),
each a 10-Hz waveform band-passed to the breathing band:

``ecg_baseline``
    Baseline wander (additive modulation; source ``ecg_baseline``).
``ecg_r_amplitude``
    R-wave amplitude per beat (amplitude modulation; source ``ecg_r_amplitude``).
``ecg_rsa``
    Instantaneous heart rate (respiratory sinus arrhythmia; source ``ecg_rsa_sarkar2015``).
``ppg_baseline``
    The PPG band-passed to the breathing band (RIIV; source ``ppg_baseline``).
``ppg_amplitude``
    Pulse amplitude per beat (RIAV; source ``ppg_amplitude``).

:func:`window_abs_r` then gives the median |Pearson r| between each modulation and a respiration
reference over non-overlapping 60-s windows, both band-passed to 0.1-0.7 Hz.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from resp_sep.sources import GRID_FS, RESP_BAND, SignalContext, compute_sources

#: names of the modulations, in table order, and the source each is read from
SOURCES = {"ecg_baseline": "ecg_baseline", "ecg_r_amplitude": "ecg_r_amplitude", "ecg_rsa": "ecg_rsa_sarkar2015",
           "ppg_baseline": "ppg_baseline", "ppg_amplitude": "ppg_amplitude"}


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
        Each a 10-Hz waveform band-passed to 0.1-0.7 Hz (NaN where the input was missing); a
        modulation that cannot be computed (no beats found, channel absent) is left out.
    """
    out: dict[str, np.ndarray] = {}
    for kind, x, fs in (("ecg", ecg, ecg_fs), ("ppg", ppg, ppg_fs)):
        if x is None:
            continue
        names = {k: v for k, v in SOURCES.items() if k.startswith(kind)}
        ctx = SignalContext(np.asarray(x, dtype=np.float64), fs, kind)
        try:
            got, _ = compute_sources(list(names.values()), ctx)
        finally:
            ctx.close()
        out.update({k: got[v].wave for k, v in names.items() if v in got})
    return out


def window_abs_r(source: np.ndarray, ref: np.ndarray, fs: float = GRID_FS, window_s: float = 60.0) -> float:
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
    sos = sps.butter(2, RESP_BAND, btype="band", fs=fs, output="sos")
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
    from resp_sep.preprocess import resample

    ref10 = resample(np.nan_to_num(np.asarray(ref, dtype=np.float64)), ref_fs, GRID_FS)
    return {k: window_abs_r(v, ref10, GRID_FS, window_s)
            for k, v in modulation_sources(ecg, ecg_fs, ppg, ppg_fs).items()}
