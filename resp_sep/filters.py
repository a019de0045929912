"""The NeuroKit2 filters respsep uses, as the SciPy calls they make: the same numbers, without NeuroKit2.

Importing NeuroKit2 costs ~100 MB of resident memory and ~1.5 s of start-up (it loads pandas,
scikit-learn and matplotlib), more than the rest of an extraction's fixed cost; the few functions
extraction needs from it are each one or two SciPy calls. They are reproduced here call for call
(same filter design, same arguments, same padding), and ``tests/test_filters.py`` checks them
against NeuroKit2 bit for bit at several sampling rates. NeuroKit2 stays a dependency (training's
quality control and the simulator use it; the tests use it as the reference).

============================  ====================================================================
respsep                       NeuroKit2 (0.2.x)
============================  ====================================================================
:func:`ecg_clean`             ``ecg_clean(x, fs, method="neurokit")``: 0.5-Hz high-pass (Butterworth,
                              order 5, zero-phase), then a moving average over one 50-Hz period
                              (zero-phase, ``filtfilt(method="pad")``)
:func:`ppg_clean`             ``ppg_clean(x, fs, method="elgendi")``: 0.5-8 Hz band-pass (order 2)
:func:`butterworth`           ``signal_filter(x, fs, lowcut, highcut, method="butterworth", order)``
:func:`ecg_rsp`               ``ecg_rsp(rate, fs, method)``: the heart rate band-passed per method
============================  ====================================================================
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: band (Hz; None: open) and order of each ``ecg_rsp`` method (NeuroKit2's table)
ECG_RSP = {"sarkar2015": (0.1, 0.7, 6), "charlton2016": (4 / 60, 60 / 60, 6), "soni2019": (None, 0.5, 6),
           "vangent2019": (0.1, 0.4, 2)}


@lru_cache(maxsize=64)
def _sos(order: int, lowcut: float | None, highcut: float | None, fs: float) -> np.ndarray:
    """``scipy.signal.butter`` second-order sections as NeuroKit2's ``_signal_filter_butterworth`` designs them."""
    from scipy.signal import butter

    lowcut = None if lowcut == 0 else lowcut
    highcut = None if highcut == 0 else highcut
    if lowcut is not None and highcut is not None:
        btype = "bandstop" if lowcut > highcut else "bandpass"
        freqs = list(np.sort([lowcut, highcut]))
    elif lowcut is not None:
        freqs, btype = lowcut, "highpass"
    elif highcut is not None:
        freqs, btype = highcut, "lowpass"
    else:
        raise ValueError("give a lowcut or a highcut (Hz)")
    return butter(order, freqs, btype=btype, output="sos", fs=fs)


def butterworth(x: np.ndarray, fs: float, lowcut: float | None = None, highcut: float | None = None,
                order: int = 5) -> np.ndarray:
    """Zero-phase Butterworth filter (``sosfiltfilt``), as NeuroKit2 ``signal_filter(method="butterworth")``.

    Parameters
    ----------
    x : numpy.ndarray, shape (n,)
        Finite samples (NeuroKit2 interpolates NaN first; respsep never passes any).
    fs : float
        Sampling rate (Hz).
    lowcut, highcut : float, optional
        Band edges (Hz): both for a band-pass, one for a high- or low-pass.
    order : int

    Returns
    -------
    numpy.ndarray, shape (n,), float64
    """
    from scipy.signal import sosfiltfilt

    return sosfiltfilt(_sos(int(order), lowcut, highcut, float(fs)), np.asarray(x, dtype=np.float64))


def ecg_clean(x: np.ndarray, fs: float, powerline: float = 50.0) -> np.ndarray:
    """NeuroKit2 ``ecg_clean(method="neurokit")``: 0.5-Hz high-pass, then the mains period's moving average.

    Parameters
    ----------
    x : numpy.ndarray, shape (n,)
        ECG (any unit), finite.
    fs : float
        Sampling rate (Hz).
    powerline : float
        Mains frequency (Hz) whose period the moving average spans.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
    """
    from scipy.signal import filtfilt

    y = butterworth(x, fs, lowcut=0.5, order=5)
    b = np.ones(int(fs / powerline)) if fs >= 100 else np.ones(2)
    return filtfilt(b, [len(b)], y, method="pad")


def ppg_clean(x: np.ndarray, fs: float) -> np.ndarray:
    """NeuroKit2 ``ppg_clean(method="elgendi")``: 0.5-8 Hz Butterworth band-pass of order 2, zero phase."""
    return butterworth(x, fs, lowcut=0.5, highcut=8.0, order=2)


def ecg_rsp(rate: np.ndarray, fs: float, method: str = "sarkar2015") -> np.ndarray:
    """NeuroKit2 ``ecg_rsp``: the instantaneous heart rate band-passed to the breathing band of ``method``.

    Parameters
    ----------
    rate : numpy.ndarray, shape (n,)
        Heart rate (beats/min) sampled at ``fs``.
    fs : float
        Its rate (Hz).
    method : {"sarkar2015", "charlton2016", "soni2019", "vangent2019"}
    """
    try:
        lo, hi, order = ECG_RSP[method.lower()]
    except KeyError:
        raise ValueError(f"method should be one of {', '.join(ECG_RSP)} (got {method!r})") from None
    return butterworth(rate, fs, lowcut=lo, highcut=hi, order=order)
