"""Synthetic recordings with a known respiration signal, for tests, demos and sanity checks.

:func:`simulate` draws a breathing pattern (varying rate, breath-to-breath variability, occasional
pauses) and derives from it the three ways respiration shows in the ECG - baseline wander,
amplitude modulation of the beats and respiratory sinus arrhythmia (RSA) - and the equivalent
modulations of a PPG, plus two reference channels a sleep study would have (nasal pressure and a
thoracic belt). Because the true respiration is known sample by sample, an extraction method can
be scored exactly.

Beat shapes come from NeuroKit2 (``ecgsyn`` ECG, ``ppg_simulate`` pulse), averaged into one
template per seed; the full signal is built by placing the template at each beat time, stretched
to the beat's RR interval, in chunks. An 8-hour recording at 256 Hz takes seconds and a few hundred
MB; the arrays are float32 (exact far below the simulated noise) to halve the memory.

Examples
--------
>>> sim = simulate(300, fs=256, seed=1)                     # doctest: +SKIP
>>> write_simulation(sim, "sim.edf")                        # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.signal import butter, find_peaks, sosfiltfilt

#: respiratory rate range of the varying pattern (breaths/min)
RATE_MIN_BPM, RATE_MAX_BPM = 8.0, 25.0
#: heart rate range of the slow heart-rate trend (beats/min), before RSA
HR_MIN_BPM, HR_MAX_BPM = 55.0, 90.0
#: breathing pauses (apnoea-like) per hour and their duration range (s)
PAUSES_PER_HOUR, PAUSE_MIN_S, PAUSE_MAX_S = 4.0, 10.0, 20.0
#: mean number of motion artefacts per hour when ``artefacts=True`` (at least one per recording)
ARTEFACTS_PER_HOUR = 15.0
#: ECG template span around the R peak (s), at RR = 1 s
ECG_PRE_S, ECG_POST_S = 0.30, 0.60
#: the QRS complex (s after the R peak) keeps its width; what follows stretches with sqrt(RR)
QRS_END_S = 0.05
#: rate of the coarse time grid on which slow processes (heart rate, drifts) are computed (Hz)
COARSE_FS = 32.0
#: samples synthesised per chunk: bounds the temporaries (~2 MB each)
CHUNK = 1 << 18
#: start time written by :func:`write_simulation`, fixed so files are reproducible
SIM_START = _dt.datetime(2000, 1, 1, 22, 0, 0)


#: modulation strengths of ``profile="real"``, chosen so that the median |r| of each modulation with
#: the belt over 60-s windows (scripts/modulation_table.py) matches MARSH's (measured on the 14
#: MARSH recordings not held out: ECG baseline 0.22, R amplitude 0.77, RSA 0.75, PPG baseline 0.34,
#: PPG amplitude 0.43; this profile, 16 x 5 min: 0.29, 0.81, 0.78, 0.36, 0.42; the default profile
#: 0.98, 0.95, 0.77, 0.93, 0.86; docs/experiments.md). Ranges are (low, high) of a per-recording
#: uniform draw; "*_noise" are
#: standard deviations of in-band (below 0.7 Hz) non-respiratory drift, "*_jitter" of the
#: per-beat log-amplitude.
REAL_PROFILE = {
    "bw_mv": (0.015, 0.045), "ecg_inband_noise_mv": 0.03, "am": (0.10, 0.25), "beat_jitter": 0.045,
    "rsa": (0.09, 0.16), "pbw": (0.03, 0.10), "ppg_inband_noise": 0.14, "pam": (0.05, 0.20),
    "pulse_jitter": 0.10,
}
PROFILES = ("default", "real")


@dataclass
class Simulation:
    """A synthetic recording and its ground truth.

    Attributes
    ----------
    fs : float
        Sampling rate of ``ecg``, ``resp``, ``nasal``, ``thor`` and ``rate_bpm`` (Hz).
    ecg : numpy.ndarray, shape (n,), float32
        ECG in mV.
    ppg : numpy.ndarray, shape (n_ppg,), float32
        PPG (pulse oximeter plethysmogram) in arbitrary units, sampled at ``ppg_fs``.
    resp : numpy.ndarray, shape (n,), float32
        True respiration (lung-volume-like), zero-mean, a typical breath about 1 peak-to-peak;
        rises during inhalation, flat during pauses.
    nasal : numpy.ndarray, shape (n,), float32
        Nasal-pressure-like reference: the airflow (derivative of ``resp``, positive on
        inhalation, scaled to unit standard deviation) plus noise.
    thor : numpy.ndarray, shape (n,), float32
        Thoracic-belt-like reference: ``resp`` times a gain, plus a slow drift and noise.
    rate_bpm : numpy.ndarray, shape (n,), float32
        True breathing rate of the breath each sample belongs to (60 / breath duration,
        breaths/min); NaN during pauses.
    breath_onsets_s : numpy.ndarray, shape (n_breaths,), float64
        Inhalation onset times (s) within the recording.
    seed : int
        The seed the recording was drawn with.
    ppg_fs : float
        Sampling rate of ``ppg`` (Hz).
    r_peaks_s : numpy.ndarray, float64
        R-peak times (s) within the recording.
    pauses_s : numpy.ndarray, shape (n_pauses, 2), float64
        Start and end (s) of each breathing pause.
    artefacts_s : numpy.ndarray, shape (n_artefacts, 2), float64
        Start and end (s) of each motion artefact (in the ECG and PPG, bursts also in the belt).
    """

    fs: float
    ecg: np.ndarray
    ppg: np.ndarray
    resp: np.ndarray
    nasal: np.ndarray
    thor: np.ndarray
    rate_bpm: np.ndarray
    breath_onsets_s: np.ndarray
    seed: int
    ppg_fs: float = 0.0
    r_peaks_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pauses_s: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    artefacts_s: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.ecg.size / self.fs


# ------------------------------------------------------------------------------------- templates


@functools.lru_cache(maxsize=16)
def _templates(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One ECG beat and one PPG pulse, averaged from NeuroKit2 simulations.

    Returns
    -------
    ecg_t, ecg_v : arrays
        Time relative to the R peak (s, from -0.30 to +0.60 at RR = 1 s) and the beat (R = 1,
        zero at both ends).
    ppg_phase, ppg_v : arrays
        Phase of the pulse cycle (0 at the foot, 1 at the next foot) and the pulse (peak = 1,
        zero at both ends).
    """
    import neurokit2 as nk

    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    fs_t = 1000
    # Morphology differs a little between seeds (P, Q, R, S, T wave amplitudes of ecgsyn).
    ai = tuple(np.array([1.2, -5.0, 30.0, -7.5, 0.75]) * rng.uniform(0.8, 1.2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ecg = nk.ecg_simulate(duration=12, sampling_rate=fs_t, heart_rate=60, heart_rate_std=1, noise=0,
                              method="ecgsyn", random_state=int(rng.integers(2**31)), ai=ai)
        ppg = nk.ppg_simulate(duration=12, sampling_rate=fs_t, heart_rate=60, frequency_modulation=0,
                              ibi_randomness=0, drift=0, motion_amplitude=0, powerline_amplitude=0,
                              burst_number=0, random_state=int(rng.integers(2**31)))

    # ECG: average the beats whose window lies inside the simulation.
    ecg = np.asarray(ecg, dtype=np.float64)
    peaks, _ = find_peaks(ecg, distance=int(0.5 * fs_t), height=0.5 * ecg.max())
    pre, post = int(ECG_PRE_S * fs_t), int(ECG_POST_S * fs_t)
    peaks = peaks[(peaks >= pre) & (peaks + post < ecg.size)]
    beats = np.stack([ecg[p - pre: p + post + 1] for p in peaks])
    beat = beats.mean(axis=0)
    ecg_t = np.arange(-pre, post + 1) / fs_t
    # Remove the line through the two ends (the isoelectric level) and taper the last 40 ms, so
    # overlapping neighbours add no steps.
    beat -= np.interp(ecg_t, [ecg_t[0], ecg_t[-1]], [beat[0], beat[-1]])
    taper = np.ones_like(beat)
    k = int(0.04 * fs_t)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
    taper[:k], taper[-k:] = ramp, ramp[::-1]
    beat *= taper
    beat /= beat[pre]

    # PPG: average the cycles foot to foot on a common phase axis.
    ppg = np.asarray(ppg, dtype=np.float64)
    feet, _ = find_peaks(-ppg, distance=int(0.5 * fs_t))
    feet = feet[feet < ppg.size - int(1.2 * fs_t)]  # the last second of ppg_simulate is flat
    phase = np.linspace(0.0, 1.0, 501)
    cycles = [np.interp(phase, np.linspace(0, 1, b - a + 1), ppg[a: b + 1]) for a, b in itertools.pairwise(feet)]
    pulse = np.mean(cycles, axis=0)
    pulse -= pulse[0] + (pulse[-1] - pulse[0]) * phase
    pulse /= pulse.max()
    return ecg_t, beat, phase, pulse


# ------------------------------------------------------------------------------------- breathing


@dataclass
class _Breaths:
    """Breath table: onset (s), inhalation and exhalation durations (s), amplitude."""

    onset: np.ndarray
    ti: np.ndarray
    te: np.ndarray
    amp: np.ndarray
    offset: float = 0.0  # subtracted from the volume so that resp is zero-mean

    def _locate(self, t: np.ndarray):
        k = np.searchsorted(self.onset, t, side="right") - 1
        np.clip(k, 0, self.onset.size - 1, out=k)
        return k, t - self.onset[k]

    def volume(self, t: np.ndarray) -> np.ndarray:
        """Lung-volume-like respiration at times ``t`` (s): raised cosine up, warped cosine down."""
        k, tau = self._locate(t)
        ti, te, a = self.ti[k], self.te[k], self.amp[k]
        up = a * 0.5 * (1.0 - np.cos(np.pi * np.clip(tau / ti, 0.0, 1.0)))
        # Exhalation empties fast first then slowly (passive recoil): the phase is warped by
        # w = 1 - (1 - psi)^2, which keeps the slope zero at both ends of the breath.
        psi = np.clip((tau - ti) / te, 0.0, 1.0)
        down = a * 0.5 * (1.0 + np.cos(np.pi * (1.0 - (1.0 - psi) ** 2)))
        v = np.where(tau < ti, up, np.where(tau < ti + te, down, 0.0))
        v[tau < 0] = 0.0  # before the first breath
        return v - self.offset

    def flow(self, t: np.ndarray) -> np.ndarray:
        """Time derivative of :meth:`volume` (per second)."""
        k, tau = self._locate(t)
        ti, te, a = self.ti[k], self.te[k], self.amp[k]
        up = a * 0.5 * np.pi / ti * np.sin(np.pi * np.clip(tau / ti, 0.0, 1.0))
        psi = np.clip((tau - ti) / te, 0.0, 1.0)
        down = -a * 0.5 * np.pi * np.sin(np.pi * (1.0 - (1.0 - psi) ** 2)) * 2.0 * (1.0 - psi) / te
        f = np.where(tau < ti, up, np.where(tau < ti + te, down, 0.0))
        f[tau < 0] = 0.0
        return f

    def rate(self, t: np.ndarray) -> np.ndarray:
        """Rate of the breath at ``t`` (breaths/min); NaN in pauses."""
        k, tau = self._locate(t)
        dur = self.ti[k] + self.te[k]
        return np.where((tau >= 0) & (tau < dur), 60.0 / dur, np.nan)


def _smooth_walk(rng: np.random.Generator, t_end: float, step_s: float, start: float, sd: float,
                 lo: float, hi: float) -> PchipInterpolator:
    """A bounded random walk with knots every ``step_s`` s, interpolated monotonically (PCHIP)."""
    n = int(np.ceil(t_end / step_s)) + 3
    vals = np.empty(n)
    vals[0] = start
    for i in range(1, n):
        v = vals[i - 1] + rng.normal(0.0, sd)
        if v < lo:  # reflect at the bounds so the walk does not stick there
            v = 2 * lo - v
        if v > hi:
            v = 2 * hi - v
        vals[i] = min(max(v, lo), hi)
    knots = (np.arange(n) - 1) * step_s + rng.uniform(-0.3, 0.3, n) * step_s
    knots = np.sort(knots)
    return PchipInterpolator(knots, vals)


def _breaths(rng: np.random.Generator, duration_s: float, breathing: str, rate_bpm: float) -> tuple[_Breaths, np.ndarray]:
    """Draw the breath table and the pauses (start, end) in seconds."""
    if breathing == "constant":
        period = 60.0 / rate_bpm
        first = -rng.uniform(0.0, period)
        onset = np.arange(first, duration_s + period, period)
        n = onset.size
        b = _Breaths(onset, np.full(n, 0.4 * period), np.full(n, 0.6 * period), np.ones(n))
        return b, np.zeros((0, 2))
    if breathing != "varying":
        raise ValueError(f"breathing must be 'varying' or 'constant', got {breathing!r}")

    trend = _smooth_walk(rng, duration_s + 60, 60.0, rng.uniform(11, 20), 2.5, RATE_MIN_BPM, RATE_MAX_BPM)
    # Pause starts: a Poisson process; a pause begins at the end of the breath in progress.
    n_p = rng.poisson(PAUSES_PER_HOUR * duration_s / 3600.0)
    pause_at = list(np.sort(rng.uniform(10.0, max(10.0, duration_s - 10.0), n_p)))
    onsets, tis, tes, amps, pauses = [], [], [], [], []
    t = -rng.uniform(0.0, 60.0 / float(trend(0.0)))
    while t < duration_s:
        period = 60.0 / float(np.clip(trend(max(t, 0.0)), RATE_MIN_BPM, RATE_MAX_BPM))
        period *= float(np.exp(rng.normal(0.0, 0.08)))  # breath-to-breath variability (~8 %)
        frac = float(np.clip(rng.normal(0.40, 0.03), 0.3, 0.5))  # inhalation share (I:E ~ 1:1.5)
        amp = float(np.exp(rng.normal(0.0, 0.12)))
        if rng.random() < 0.01:  # an occasional sigh
            amp *= 2.0
        onsets.append(t)
        tis.append(frac * period)
        tes.append((1.0 - frac) * period)
        amps.append(amp)
        t += period
        if pause_at and t >= pause_at[0]:
            pause_at.pop(0)
            length = rng.uniform(PAUSE_MIN_S, PAUSE_MAX_S)
            pauses.append((t, t + length))
            t += length
    b = _Breaths(np.array(onsets), np.array(tis), np.array(tes), np.array(amps))
    pauses_arr = np.array(pauses, dtype=np.float64).reshape(-1, 2)
    return b, pauses_arr[pauses_arr[:, 0] < duration_s]


def _lowpass_noise(rng: np.random.Generator, n: int, fs: float, cutoff_hz: float, sd: float) -> np.ndarray:
    """Gaussian noise low-passed at ``cutoff_hz`` and scaled to standard deviation ``sd``."""
    x = rng.standard_normal(n)
    if sd == 0 or n < 16:
        return np.zeros(n)
    wn = min(cutoff_hz / (fs / 2), 0.99)
    x = sosfiltfilt(butter(2, wn, output="sos"), x)
    s = x.std()
    return x * (sd / s) if s > 0 else x


# ------------------------------------------------------------------------------------ simulation


def simulate(
    duration_s: float = 300.0,
    fs: float = 256.0,
    seed: int = 0,
    *,
    ppg_fs: float | None = None,
    breathing: str = "varying",
    rate_bpm: float = 15.0,
    noise: float = 1.0,
    artefacts: bool = True,
    mains_hz: float | None = None,
    profile: str = "default",
) -> Simulation:
    """Simulate an ECG + PPG recording with a known respiration.

    Parameters
    ----------
    duration_s : float
        Duration in seconds.
    fs : float
        Sampling rate of the ECG and the respiration channels (Hz).
    seed : int
        Random seed; the same arguments give identical arrays.
    ppg_fs : float, optional
        Sampling rate of the PPG (Hz); ``fs`` when not given.
    breathing : {"varying", "constant"}
        ``"varying"``: the rate follows a smooth random walk between 8 and 25 breaths/min with
        ~8 % breath-to-breath variability, varying depth, occasional sighs and about 4 pauses of
        10-20 s per hour. ``"constant"``: exactly ``rate_bpm``, identical breaths, no pauses.
    rate_bpm : float
        Breathing rate for ``breathing="constant"`` (breaths/min).
    noise : float
        Scale of the measurement noise and non-respiratory drifts (0: clean signals; 1: typical).
    artefacts : bool
        Add motion artefacts (bursts and electrode-pop steps) to the ECG, PPG and belt, about 15
        per hour and at least one.
    mains_hz : float, optional
        Add mains interference (50 or 60 Hz, 0.02 mV) to the ECG.
    profile : {"default", "real"}
        ``"default"``: the modulation strengths below, where breathing is plain to see in every
        channel. ``"real"``: strengths calibrated to resting adults (MARSH; see
        :data:`REAL_PROFILE` and ``scripts/modulation_table.py``): baseline wander weak and buried
        in non-respiratory drift in the breathing band, R-amplitude and pulse-amplitude
        modulation partly masked by beat-to-beat variability, PPG baseline modulation weak.

    Returns
    -------
    Simulation

    Notes
    -----
    The ECG carries the respiration in three ways: baseline wander (additive, 0.08-0.2 mV per unit
    of ``resp``, sign drawn per seed as it depends on the lead), beat amplitude modulation (15-30 %
    per unit, sign drawn per seed) and RSA (heart rate 6-12 % higher per unit, so faster during
    inhalation). The heart rate follows a random walk between 55 and 90 beats/min. The PPG pulse
    follows each beat after a pulse arrival time of 0.20-0.28 s; its baseline falls and its
    amplitude shrinks during inhalation (by 10-25 % per unit each).
    """
    if not (duration_s > 0 and np.isfinite(duration_s)):
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if not (fs > 0 and np.isfinite(fs)):
        raise ValueError(f"fs must be positive, got {fs}")
    ppg_fs = float(fs if ppg_fs is None else ppg_fs)
    if not (ppg_fs > 0 and np.isfinite(ppg_fs)):
        raise ValueError(f"ppg_fs must be positive, got {ppg_fs}")
    if breathing == "constant" and not (0 < rate_bpm <= 120):
        raise ValueError(f"rate_bpm must be in (0, 120], got {rate_bpm}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    real = profile == "real"
    noise = float(max(noise, 0.0))
    fs = float(fs)
    seed = int(seed)

    # Independent streams per component, so that changing one part leaves the others unchanged.
    ss = np.random.SeedSequence(seed)
    r_breath, r_heart, r_mod, r_ecg, r_ppg, r_ref, r_art = (np.random.default_rng(s) for s in ss.spawn(7))

    ecg_t, ecg_v, ppg_ph, ppg_v = _templates(seed)

    # --- breathing
    breaths, pauses = _breaths(r_breath, float(duration_s), breathing, float(rate_bpm))
    tc = np.arange(-3.0, duration_s + 3.0, 1.0 / COARSE_FS)  # coarse grid, with margins
    inside = (tc >= 0) & (tc < duration_s)
    breaths.offset = float(breaths.volume(tc[inside]).mean())
    resp_c = breaths.volume(tc)
    flow_scale = float(breaths.flow(tc[inside]).std()) or 1.0

    # --- heart: slow trend (random walk) times RSA, integrated into beat times
    hr_trend = _smooth_walk(r_heart, duration_s + 10, 90.0, r_heart.uniform(60, 80), 4.0, HR_MIN_BPM, HR_MAX_BPM)
    rsa = r_mod.uniform(*REAL_PROFILE["rsa"]) if real else r_mod.uniform(0.06, 0.12)
    hr = hr_trend(np.clip(tc, 0, None)) * (1.0 + rsa * resp_c)
    cyc = np.cumsum(hr / 60.0) / COARSE_FS + r_heart.uniform(0, 1)
    m = np.arange(np.ceil(cyc[0]), np.floor(cyc[-1]) + 1)
    r_peaks = np.interp(m, cyc, tc) + r_heart.normal(0, 0.004, m.size)  # small beat-to-beat jitter
    r_peaks.sort()
    rr = np.diff(r_peaks, prepend=r_peaks[0] - 60.0 / hr[0])
    stretch = np.sqrt(np.clip(rr, 0.3, 2.0))  # QT ~ sqrt(RR) (Bazett)
    resp_at_r = breaths.volume(r_peaks)
    ecg_gain = r_mod.uniform(0.8, 1.6)  # mV of the R wave
    am = r_mod.uniform(*(REAL_PROFILE["am"] if real else (0.15, 0.30))) * r_mod.choice([-1.0, 1.0])
    jit = REAL_PROFILE["beat_jitter"] if real else 0.02
    beat_amp = ecg_gain * (1.0 + am * resp_at_r) * np.exp(r_heart.normal(0, jit, r_peaks.size))
    bw = r_mod.uniform(*(REAL_PROFILE["bw_mv"] if real else (0.08, 0.20))) * r_mod.choice([-1.0, 1.0])

    # --- PPG pulses: foot after the R peak by the pulse arrival time
    pat = r_mod.uniform(0.20, 0.28) + _lowpass_noise(r_heart, tc.size, COARSE_FS, 0.01, 0.01)
    feet = r_peaks + np.interp(r_peaks, tc, pat) + r_heart.normal(0, 0.003, r_peaks.size)
    feet = np.maximum.accumulate(feet)
    pam = r_mod.uniform(*(REAL_PROFILE["pam"] if real else (0.10, 0.25)))
    pjit = REAL_PROFILE["pulse_jitter"] if real else 0.03
    pulse_amp = (1.0 - pam * breaths.volume(feet)) * np.exp(r_heart.normal(0, pjit, feet.size))
    pbw = -r_mod.uniform(*(REAL_PROFILE["pbw"] if real else (0.10, 0.25)))

    # --- slow non-respiratory drifts (coarse grid, interpolated per sample)
    ecg_drift = _lowpass_noise(r_ecg, tc.size, COARSE_FS, 0.03, 0.05 * noise)
    ppg_drift = _lowpass_noise(r_ppg, tc.size, COARSE_FS, 0.02, 0.10 * noise)
    thor_drift = _lowpass_noise(r_ref, tc.size, COARSE_FS, 0.01, 0.15 * noise)
    thor_gain = r_ref.uniform(0.8, 1.2)
    if real:  # non-respiratory drift inside the breathing band (drawn last: the default streams stay put)
        ecg_drift = ecg_drift + _lowpass_noise(r_ecg, tc.size, COARSE_FS, 0.7, REAL_PROFILE["ecg_inband_noise_mv"] * noise)
        ppg_drift = ppg_drift + _lowpass_noise(r_ppg, tc.size, COARSE_FS, 0.7, REAL_PROFILE["ppg_inband_noise"] * noise)

    n = round(duration_s * fs)
    n_ppg = round(duration_s * ppg_fs)
    out = {k: np.empty(n, dtype=np.float32) for k in ("ecg", "resp", "nasal", "thor", "rate")}
    ppg = np.empty(n_ppg, dtype=np.float32)

    def ecg_beats(t: np.ndarray) -> np.ndarray:
        # Each sample lies in the window of at most the beat before and the beat after it.
        # (the beat list extends 3 s beyond both ends, so both always exist).
        j = np.searchsorted(r_peaks, t)
        v = np.zeros(t.size)
        for idx in (j - 1, j):
            tau = t - r_peaks[idx]
            tw = np.where(tau > QRS_END_S, QRS_END_S + (tau - QRS_END_S) / stretch[idx], tau)
            v += beat_amp[idx] * np.interp(tw, ecg_t, ecg_v, left=0.0, right=0.0)
        return v

    def ppg_pulses(t: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(feet, t, side="right") - 1, 0, feet.size - 2)
        ph = (t - feet[k]) / (feet[k + 1] - feet[k])
        return pulse_amp[k] * np.interp(ph, ppg_ph, ppg_v, left=0.0, right=0.0)

    for i0 in range(0, n, CHUNK):
        t = np.arange(i0, min(i0 + CHUNK, n)) / fs
        sl = slice(i0, i0 + t.size)
        v = breaths.volume(t)
        out["resp"][sl] = v
        out["rate"][sl] = breaths.rate(t)
        out["nasal"][sl] = breaths.flow(t) / flow_scale + 0.05 * noise * r_ref.standard_normal(t.size)
        out["thor"][sl] = (thor_gain * v + np.interp(t, tc, thor_drift)
                           + 0.02 * noise * r_ref.standard_normal(t.size))
        e = ecg_beats(t) + bw * v + np.interp(t, tc, ecg_drift) + 0.015 * noise * r_ecg.standard_normal(t.size)
        if mains_hz:
            e += 0.02 * np.sin(2 * np.pi * mains_hz * t)
        out["ecg"][sl] = e
    for i0 in range(0, n_ppg, CHUNK):
        t = np.arange(i0, min(i0 + CHUNK, n_ppg)) / ppg_fs
        ppg[i0: i0 + t.size] = (ppg_pulses(t) + pbw * breaths.volume(t) + np.interp(t, tc, ppg_drift)
                                + 0.01 * noise * r_ppg.standard_normal(t.size))

    art = _add_artefacts(r_art, out["ecg"], fs, ppg, ppg_fs, out["thor"], duration_s) if artefacts else np.zeros((0, 2))

    resp = out["resp"]
    resp -= resp.mean(dtype=np.float64)  # exact zero mean (the offset above came from a coarse grid)
    onsets = breaths.onset[(breaths.onset >= 0) & (breaths.onset < duration_s)]
    return Simulation(
        fs=fs, ecg=out["ecg"], ppg=ppg, resp=resp, nasal=out["nasal"], thor=out["thor"],
        rate_bpm=out["rate"], breath_onsets_s=onsets.astype(np.float64), seed=seed, ppg_fs=ppg_fs,
        r_peaks_s=r_peaks[(r_peaks >= 0) & (r_peaks < duration_s)], pauses_s=pauses, artefacts_s=art,
    )


def _add_artefacts(rng: np.random.Generator, ecg: np.ndarray, fs: float, ppg: np.ndarray, ppg_fs: float,
                   thor: np.ndarray, duration_s: float) -> np.ndarray:
    """Add motion artefacts in place; return their (start, end) times in seconds.

    Two kinds: a burst of large, low-frequency movement noise (all three channels), or an
    electrode pop in the ECG - a step that decays back as the amplifier's high-pass recovers -
    with a smaller burst in the PPG.
    """
    count = max(1, int(rng.poisson(ARTEFACTS_PER_HOUR * duration_s / 3600.0)))
    spans = []
    for _ in range(count):
        length = rng.uniform(0.5, 4.0)
        start = rng.uniform(0.0, max(duration_s - length, 0.0))
        kind = "pop" if rng.random() < 0.3 else "burst"
        if kind == "pop":
            tau = rng.uniform(0.3, 1.5)
            length = max(length, 4 * tau)
        end = min(start + length, duration_s)
        spans.append((start, end))

        def burst(x: np.ndarray, rate: float, amp: float, start: float = start, end: float = end) -> None:
            i0, i1 = int(start * rate), min(int(np.ceil(end * rate)), x.size)
            if i1 - i0 < 2:
                return
            # Movement: random 0.5-5 Hz wobble (knots every 0.1 s) under a Hann envelope.
            knots = rng.standard_normal(int((i1 - i0) / rate * 10) + 2)
            wobble = np.interp(np.linspace(0, knots.size - 1, i1 - i0), np.arange(knots.size), knots)
            x[i0:i1] += (amp * wobble * np.hanning(i1 - i0)).astype(x.dtype)

        if kind == "pop":
            i0, i1 = int(start * fs), min(int(np.ceil(end * fs)), ecg.size)
            tt = np.arange(i1 - i0) / fs
            ecg[i0:i1] += (rng.uniform(1.0, 3.0) * rng.choice([-1, 1]) * np.exp(-tt / tau)).astype(ecg.dtype)
            burst(ppg, ppg_fs, rng.uniform(0.2, 0.8))
        else:
            burst(ecg, fs, rng.uniform(0.5, 3.0))
            burst(ppg, ppg_fs, rng.uniform(0.5, 2.0))
            burst(thor, fs, rng.uniform(0.2, 0.8))
    return np.array(sorted(spans), dtype=np.float64).reshape(-1, 2)


# ---------------------------------------------------------------------------------------- writing


def write_simulation(
    sim: Simulation,
    path: str | os.PathLike,
    fmt: str = "edf",
    ecg_label: str = "ECG",
    ppg_label: str = "Pleth",
    nasal_label: str = "Nasal Pressure",
    thor_label: str = "Thorax",
) -> Path:
    """Write a simulation as a recording the tool can read.

    Channels: ECG (mV), PPG, nasal pressure, thoracic belt and the true respiration
    (``"Resp True"``), all in arbitrary units except the ECG.

    Parameters
    ----------
    sim : Simulation
    path : str or path-like
        ``.edf`` file, or WFDB record (``folder/name`` or ``folder/name.hea``).
    fmt : {"edf", "wfdb"}
        EDF+ with annotations ``"inhalation onset"`` at each breath onset, ``"breathing pause"``
        and ``"motion artefact"`` (with durations); or a WFDB record (no annotations; all channels
        must share one rate, so ``ppg_fs`` must equal ``fs``).
    ecg_label, ppg_label, nasal_label, thor_label : str
        Channel labels.

    Returns
    -------
    pathlib.Path
        The file written (the ``.hea`` header for WFDB).

    Raises
    ------
    ValueError
        Unknown format; WFDB with differing rates.
    OutputError
        The file cannot be written.
    """
    from resp_sep import writers

    signals = [
        {"label": ecg_label, "fs": sim.fs, "unit": "mV", "data": sim.ecg},
        {"label": ppg_label, "fs": sim.ppg_fs or sim.fs, "unit": "a.u.", "data": sim.ppg},
        {"label": nasal_label, "fs": sim.fs, "unit": "a.u.", "data": sim.nasal},
        {"label": thor_label, "fs": sim.fs, "unit": "a.u.", "data": sim.thor},
        {"label": "Resp True", "fs": sim.fs, "unit": "a.u.", "data": sim.resp},
    ]
    if fmt == "edf":
        ann = [(float(t), 0.0, "inhalation onset") for t in sim.breath_onsets_s]
        ann += [(float(a), float(b - a), "breathing pause") for a, b in sim.pauses_s]
        ann += [(float(a), float(b - a), "motion artefact") for a, b in sim.artefacts_s]
        ann.sort()
        return writers.write_edf(path, signals, annotations=ann, start_time=SIM_START)
    if fmt == "wfdb":
        comments = [f"respsep simulation seed={sim.seed} duration={sim.duration_s:g}s"]
        return writers.write_wfdb(path, signals, start_time=SIM_START, comments=comments)
    raise ValueError(f"fmt must be 'edf' or 'wfdb', got {fmt!r}")
