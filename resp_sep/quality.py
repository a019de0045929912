"""Label-free quality of a respiratory source, per analysis window.

Breathing is quasi-periodic: within a window of a minute, a waveform that carries it has most of
its breathing-band power in one narrow spectral peak, and its breaths come at regular intervals.
Noise, cardiac leakage and artefacts spread their power over the band. The index used by fusion is
therefore the **spectral concentration** of the window (Karlen et al. 2013 use the same idea for
their modulation quality; Charlton et al. 2016 survey such indices):

``concentration = P(|f - f0| <= half_width(f0)) / P(FULL_BAND)``

where ``P`` is the power of the Hann-tapered, zero-padded periodogram of the window (after
removing its mean and linear trend), ``f0`` the frequency of its highest peak within
:data:`BAND` (the breathing band, 6-42 breaths/min) and ``half_width(f0)`` =
max(:data:`MIN_HALF_WIDTH_HZ`, :data:`REL_HALF_WIDTH` x f0): breathing whose rate wanders a few
percent within the window still counts as one peak. A pure sinusoid scores ~0.9, white noise
band-passed to the breathing band ~0.15, and a window with less than :data:`MIN_VALID` of its
samples valid scores 0.

The other ingredient of a source's weight, *agreement* with the other sources, is computed in
:mod:`resp_sep.fusion`, which needs every source's ``f0`` at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the breathing band (Hz) in which the dominant peak is sought: 6-42 breaths/min.
BAND = (0.1, 0.7)
#: the band (Hz) whose power is the denominator: anything a breath detector could take for a breath.
FULL_BAND = (0.05, 1.0)
#: the peak's half-width (Hz): absolute floor, and relative to its frequency.
MIN_HALF_WIDTH_HZ, REL_HALF_WIDTH = 0.035, 0.12
#: windows with less valid signal than this fraction have quality 0.
MIN_VALID = 0.5
#: spectral tilt: power is weighted by f ** TILT, so that slow drift does not win by its 1/f spectrum.
TILT = 1.0
#: periodogram length (samples): zero padding to a fine frequency grid (0.005 Hz at 10 Hz).
NFFT = 2048


@dataclass
class WindowSpectra:
    """Spectral quality of one waveform over a set of windows.

    Attributes
    ----------
    peak_hz : numpy.ndarray, shape (n_windows,)
        Dominant breathing-band frequency (Hz); NaN where the window has too little valid signal.
    concentration : numpy.ndarray, shape (n_windows,)
        0..1, see the module docstring; 0 where the window has too little valid signal.
    valid : numpy.ndarray, shape (n_windows,)
        Fraction of valid (finite) samples.
    """

    peak_hz: np.ndarray
    concentration: np.ndarray
    valid: np.ndarray


#: windows analysed at once by :func:`window_spectra` (each row is computed on its own, so the
#: result does not depend on it; it bounds the temporaries: ~20 MB instead of ~10 MB per hour)
SPECTRA_BLOCK = 256


def window_spectra(wave: np.ndarray, fs: float, starts: np.ndarray, length: int) -> WindowSpectra:
    """Quality of ``wave`` in windows ``[s, s + length)`` for each start ``s`` (samples).

    Parameters
    ----------
    wave : numpy.ndarray, shape (n,)
        A respiratory source (any unit), NaN where invalid; or a row of ``resp_sep.fusion``'s
        normalised sources (indexed by window, never copied whole).
    fs : float
        Its rate (Hz).
    starts : numpy.ndarray of int, shape (n_windows,)
        Window starts (samples); every window must lie inside the signal.
    length : int
        Window length (samples).

    Returns
    -------
    WindowSpectra
    """
    if not hasattr(wave, "take"):  # an array; fusion passes a row it normalises where it is read
        wave = np.asarray(wave, dtype=np.float64)
    starts = np.asarray(starts, dtype=int)
    if starts.size > SPECTRA_BLOCK:  # a few hundred windows at a time: memory independent of the length
        cuts = list(range(0, starts.size, SPECTRA_BLOCK)) + [starts.size]
        if cuts[-1] - cuts[-2] == 1:  # no block of one window: numpy sums a lone row in another order
            del cuts[-2]
        parts = [_window_spectra(wave, fs, starts[a:b], length) for a, b in zip(cuts[:-1], cuts[1:])]
        return WindowSpectra(*(np.concatenate([getattr(p, k) for p in parts])
                               for k in ("peak_hz", "concentration", "valid")))
    return _window_spectra(wave, fs, starts, length)


def _window_spectra(wave: np.ndarray, fs: float, starts: np.ndarray, length: int, lone: bool = False) -> WindowSpectra:
    """:func:`window_spectra` of one block of windows; ``lone``: every row's numbers as if it were alone.

    (The full-band total of several rows is a column selection whose sum runs in another order than a
    lone row's, which differs in the last bits; ``lone`` sums each row contiguously, as a lone row.)
    """
    idx = starts[:, None] + np.arange(length)[None, :]
    seg = wave[idx]  # (n_windows, length)
    finite = np.isfinite(seg)
    valid = finite.mean(axis=1)
    nfft = max(NFFT, 1 << int(np.ceil(np.log2(length))))
    spec = _power(seg, finite, nfft)
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    if TILT:
        spec = spec * np.maximum(f, FULL_BAND[0])[None, :] ** TILT
    band = (f >= BAND[0]) & (f <= BAND[1])
    full = (f >= FULL_BAND[0]) & (f <= FULL_BAND[1])
    total = (np.ascontiguousarray(spec[:, full]) if lone else spec[:, full]).sum(axis=1)
    ib = np.flatnonzero(band)
    peak = f[ib[np.argmax(spec[:, band], axis=1)]]
    half = np.maximum(MIN_HALF_WIDTH_HZ, REL_HALF_WIDTH * peak)
    near = np.abs(f[None, :] - peak[:, None]) <= half[:, None]
    conc = np.where(total > 0, (spec * (near & full[None, :])).sum(axis=1) / np.where(total > 0, total, 1), 0.0)
    bad = valid < MIN_VALID
    conc[bad] = 0.0
    peak = peak.astype(float)
    peak[bad | ~(total > 0)] = np.nan
    return WindowSpectra(peak, conc, valid)


def _power(seg: np.ndarray, finite: np.ndarray, nfft: int) -> np.ndarray:
    """Periodograms of the rows of ``seg`` (NaN bridged by the row mean), detrended and Hann-tapered."""
    n = seg.shape[1]
    t = np.arange(n, dtype=np.float64)
    cnt = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    x = np.where(finite, seg, 0.0)
    mean = x.sum(axis=1, keepdims=True) / cnt
    x = np.where(finite, seg - mean, 0.0)
    # least-squares linear trend over the valid samples: drift is not breathing
    tc = np.where(finite, t - (np.where(finite, t, 0).sum(axis=1, keepdims=True) / cnt), 0.0)
    slope = (tc * x).sum(axis=1, keepdims=True) / np.maximum((tc * tc).sum(axis=1, keepdims=True), 1e-12)
    x = np.where(finite, x - slope * tc, 0.0)
    return np.abs(np.fft.rfft(x * np.hanning(n)[None, :], n=nfft, axis=1)) ** 2
