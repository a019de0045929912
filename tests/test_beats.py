"""Heart beats block by block (resp_sep.beats) against NeuroKit2 on the whole signal; polarity; detectors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from resp_sep import beats, chunks
from resp_sep.io import read_recording, recording_from_arrays
from resp_sep.sources import SignalContext, compute_sources, source_names

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    from resp_sep.simulate import simulate, write_simulation

    d = tmp_path_factory.mktemp("beats")
    # ECG and PPG at 128 Hz (PPG resampled to 100 Hz); ECG at 600 Hz (cleaned at 500 Hz), PPG at 100 Hz
    a = write_simulation(simulate(duration_s=1200, fs=128.0, seed=3), d / "a.edf")
    b = write_simulation(simulate(duration_s=600, fs=600.0, ppg_fs=100.0, seed=4), d / "b.edf")
    return str(a), str(b)


# ----------------------------------------------------------------------- NeuroKit2 on the whole signal


def nk_r_peaks(x: np.ndarray, fs: float, method: str = "neurokit", correct: bool = True) -> np.ndarray:
    """The oracle: NeuroKit2's own cleaning and detector on the whole (bridged) ECG, as respsep used to run it."""
    import neurokit2 as nk
    from scipy.signal import resample_poly

    from resp_sep.preprocess import fill_gaps
    from resp_sep.resample import rate_ratio

    x = fill_gaps(x)
    fs_c = min(fs, beats.MAX_ECG_FS)
    if fs_c != fs:
        up, down = rate_ratio(fs, fs_c)
        x = resample_poly(x - np.median(x), up, down)
        fs_c = fs * up / down
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = nk.ecg_clean(x, sampling_rate=fs_c)
        _, info = nk.ecg_peaks(clean, sampling_rate=fs_c, method=method, correct_artifacts=correct)
    return np.round(np.asarray(info["ECG_R_Peaks"]) * fs / fs_c).astype(int)


def nk_ppg(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    import neurokit2 as nk
    from scipy.signal import resample_poly

    from resp_sep.preprocess import fill_gaps
    from resp_sep.resample import rate_ratio

    x = fill_gaps(x)
    fs_p = min(fs, beats.PPG_FS)
    up, down = rate_ratio(fs, fs_p)
    y = resample_poly(x - np.median(x), up, down) if up != down else x - np.median(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = np.asarray(nk.ppg_clean(y, sampling_rate=fs_p))
        peaks = np.asarray(nk.ppg_findpeaks(clean, sampling_rate=fs_p)["PPG_Peaks"])
    starts = np.concatenate(([0], peaks[:-1]))
    feet = np.minimum.reduceat(clean, starts)
    feet[-1] = clean[starts[-1]: peaks[-1] + 1].min()
    return peaks / fs_p, clean[peaks] - feet


def _ctx(path: str, kind: str, block_s: float) -> SignalContext:
    rec = read_recording(path)
    label = "ECG" if kind == "ecg" else "Pleth"
    return SignalContext(kind=kind, channel=rec.channel(label), path=path, block_s=block_s)


@pytest.mark.parametrize("block_s", [90.0, 137.3, 1e9])
def test_blocks_give_neurokit2s_beats(nights, block_s):
    for path in nights:
        rec = read_recording(path)
        ecg = rec.channel("ECG")
        ctx = _ctx(path, "ecg", block_s)
        r = ctx.r_peaks()
        np.testing.assert_array_equal(r, nk_r_peaks(ecg.read(), ecg.fs))
        np.testing.assert_array_equal(ctx.r_waves(), nk_r_peaks(ecg.read(), ecg.fs, correct=False))
        assert not ctx._beats().inverted
        if block_s < 1e9:  # beats near block boundaries are there too
            t = r / ctx.fs
            assert (np.abs((t + block_s / 2) % block_s - block_s / 2) < 0.5).sum() >= 3
        ppg = rec.channel("Pleth")
        t, amp = _ctx(path, "ppg", block_s).ppg_beats()
        t_ref, amp_ref = nk_ppg(ppg.read(), ppg.fs)
        np.testing.assert_array_equal(t, t_ref)
        np.testing.assert_allclose(amp, amp_ref, rtol=1e-10, atol=0)  # IIR cleaning per block: rounding


def test_sources_do_not_depend_on_the_block_size(nights):
    path = nights[0]
    for kind in ("ecg", "ppg"):
        names = source_names(kind, heuristics_only=True)
        a, _ = compute_sources(names, _ctx(path, kind, 100.0))
        b, _ = compute_sources(names, _ctx(path, kind, 1e9))
        assert list(a) == list(b) == names
        for k in names:
            if k.endswith("_baseline") or k == "ppg_rate" or k.startswith("ecg_rsa"):
                np.testing.assert_array_equal(a[k].wave, b[k].wave, err_msg=k)  # FIR and beat times: bit for bit
            else:
                np.testing.assert_allclose(a[k].wave, b[k].wave, rtol=0, atol=1e-10 * np.nanmax(np.abs(b[k].wave)),
                                           err_msg=k)


@pytest.mark.skipif(not (DATA / "cinc2015-wfdb").is_dir(), reason="../shared/data/cinc2015-wfdb absent")
@pytest.mark.parametrize("record", ["v212s", "v100s"])
def test_wfdb_with_gaps_gives_neurokit2s_beats(record):
    """WFDB records, also with NaN runs, take the same block path; beats are NeuroKit2's on the bridged signal."""
    ch = read_recording(DATA / "cinc2015-wfdb" / f"{record}.hea").channel("II")
    ctx = SignalContext(kind="ecg", channel=ch, block_s=60.0)
    sign = -1.0 if ctx._beats().inverted else 1.0  # v212s reads inverted: its largest deflections point down
    np.testing.assert_array_equal(ctx.r_peaks(), nk_r_peaks(sign * ch.read(), ch.fs))


def test_inverted_ecg_gives_the_same_beats_and_sources(nights):
    """Polarity is decided per recording and exactly antisymmetric: -ECG gives the upright ECG's numbers."""
    rec = read_recording(nights[0])
    x = rec.channel("ECG").read()
    names = source_names("ecg", heuristics_only=True)
    up = SignalContext(x, 128.0, "ecg")
    down = SignalContext(-x, 128.0, "ecg")
    a, _ = compute_sources(names, up)
    b, _ = compute_sources(names, down)
    assert not up._beats().inverted and down._beats().inverted
    assert "read inverted" in " ".join(down.notes)
    np.testing.assert_array_equal(up.r_peaks(), down.r_peaks())
    for k in names:
        np.testing.assert_array_equal(a[k].wave, b[k].wave, err_msg=k)


def test_pantompkins_block_by_block_equals_neurokit2():
    """The fallback detector, block by block on the spilled cleaned ECG, gives NeuroKit2's pantompkins1985 peaks."""
    import neurokit2 as nk

    from resp_sep.simulate import simulate

    sim = simulate(duration_s=400, fs=250.0, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = np.asarray(nk.ecg_clean(sim.ecg, sampling_rate=250.0))
        want = np.asarray(nk.ecg_findpeaks(clean, sampling_rate=250.0, method="pantompkins1985")["ECG_R_Peaks"])
    sp = chunks.Spill()
    sp.append(clean)
    for block, margin in ((clean.size, 0), (7_000, 2_500), (10_001, 7_500)):
        got = beats._pantompkins(sp, clean.size, 250.0, 1.0, block, margin)
        np.testing.assert_array_equal(got, want)
    sp.close()


def test_pantompkins_beats_are_moved_to_their_r_waves():
    """Pan-Tompkins' beats (peaks of a trailing moving integral, ~40 ms after the R wave) are read at the R waves."""
    import neurokit2 as nk

    from resp_sep.simulate import simulate

    from resp_sep.filters import ecg_clean

    sim = simulate(duration_s=120, fs=250.0, seed=1, artefacts=False)

    clean = ecg_clean(sim.ecg.astype(float), 250.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pt = np.asarray(nk.ecg_findpeaks(clean, sampling_rate=250.0, method="pantompkins1985")["ECG_R_Peaks"])
    true = np.round(sim.r_peaks_s * 250.0).astype(int)

    def lag(p):
        return np.array([p[np.argmin(np.abs(p - t))] - t for t in true[2:-2]])

    assert np.median(np.abs(lag(pt))) >= 5  # 20 ms and more after the R wave, where the ECG is near its baseline
    sp = chunks.Spill()
    sp.append(clean)
    at = beats._at_r_waves(sp, pt, 250.0, 1.0)
    sp.close()
    assert np.abs(lag(at)).max() <= 2
    assert clean[at[1:-1]].min() > 0.5 * np.median(clean[true])


def ectopic_ecg(fs: float = 250.0, duration_s: float = 300.0, every: int = 15, seed: int = 0):
    """An ECG whose R waves follow breathing (15 breaths/min, +-30 %), with a premature ventricular complex
    (wide, upright, at 55 % of the interval) instead of every ``every``-th sinus beat and a compensatory pause.

    Returns ecg, fs, the beat times (s), which are ectopic (bool) and the breathing at 10 Hz.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * fs)) / fs
    times, ectopic = [], []
    b, k = 0.5, 0
    while b < duration_s - 1.5:
        rr = 0.8 + 0.01 * rng.standard_normal()
        k += 1
        if k % every == 0:
            times.append(b + 0.55 * rr)
            ectopic.append(True)
            b += 2 * rr
        else:
            b += rr
        times.append(b)
        ectopic.append(False)
    times, ectopic = np.array(times), np.array(ectopic)
    ecg = 0.01 * rng.standard_normal(t.size)
    for bt, ect in zip(times, ectopic):
        sl = slice(int((bt - 0.4) * fs), int((bt + 0.6) * fs))
        u = t[sl] - bt
        if ect:
            ecg[sl] += 1.3 * np.exp(-0.5 * (u / 0.04) ** 2) - 0.5 * np.exp(-0.5 * ((u - 0.3) / 0.06) ** 2)
        else:
            m = 1 + 0.3 * np.sin(2 * np.pi * 0.25 * bt)
            ecg[sl] += (m * (np.exp(-0.5 * (u / 0.012) ** 2) - 0.15 * np.exp(-0.5 * ((u - 0.03) / 0.01) ** 2)
                             - 0.1 * np.exp(-0.5 * ((u + 0.03) / 0.01) ** 2))
                        + 0.25 * np.exp(-0.5 * ((u - 0.25) / 0.04) ** 2))
    return ecg, fs, times, ectopic, np.sin(2 * np.pi * 0.25 * np.arange(int(duration_s * 10)) / 10)


def test_amplitudes_are_read_at_the_r_waves_of_an_ectopic_ecg(monkeypatch):
    """Intervals from the corrected beats, amplitudes where the R waves are.

    Kubios' correction moves the ectopic complex and the beat after it to the middle of their
    neighbours, where the ECG is near its baseline: R amplitude read there dips at every ectopic
    beat. The amplitude sources read the detected R waves instead.
    """
    from resp_sep.sources import compute_source

    ecg, fs, times, ectopic, breathing = ectopic_ecg()
    ctx = SignalContext(ecg, fs, "ecg")
    waves, corrected = ctx.r_waves(), ctx.r_peaks()

    def off(p):  # distance (s) to the nearest beat of the ECG
        return np.abs(times[None, :] - p[:, None] / fs).min(axis=1)

    assert waves.size == times.size and off(waves).max() < 0.01
    assert (off(corrected) > 0.02).sum() >= ectopic.sum()  # correction moved beats off the R waves
    b = ctx._beats()
    hit = np.abs(times[None, :] - waves[:, None] / fs).argmin(axis=1)
    np.testing.assert_array_equal(b.artefact, ectopic[hit])  # Kubios marks the ectopic complexes, only them
    clean, fs_c = ctx.clean_ecg()
    at = clean.take(np.round(waves * fs_c / fs).astype(int)[:, None])[:, 0]
    moved = clean.take(np.round(corrected * fs_c / fs).astype(int)[:, None])[:, 0]
    assert at.min() > 0.5 * np.median(at)
    assert (moved < 0.2 * np.median(at)).sum() >= ectopic.sum()  # what the amplitude sources used to read
    mid = slice(100, -100)
    for name in ("ecg_r_amplitude", "ecg_rs_amplitude", "ecg_qrs_area"):
        r_new = abs(np.corrcoef(compute_source(name, ctx).wave[mid], breathing[mid])[0, 1])
        old = SignalContext(ecg, fs, "ecg")
        monkeypatch.setattr(old, "r_waves", old.r_peaks)  # amplitudes at the corrected beats
        r_old = abs(np.corrcoef(compute_source(name, old).wave[mid], breathing[mid])[0, 1])
        assert r_new > 0.8 and r_new > r_old + 0.1, (name, r_new, r_old)


def test_most_prominent_peak_equals_scipy_loop():
    """The vectorised peak choice of NeuroKit2's detectors equals their find_peaks loop (plateaus, ties, long segments)."""
    import scipy.signal

    rng = np.random.default_rng(0)
    for trial in range(120):
        n = 2000
        x = np.round(np.cumsum(rng.standard_normal(n)) * rng.choice([0.3, 1.0, 5.0]))  # quantised: plateaus, ties
        if trial % 3 == 0:
            x = rng.integers(0, 4, n).astype(float)
        beg = np.sort(rng.choice(n - 800, 50, replace=False))
        end = beg + rng.integers(0, 45, beg.size)
        end[7] = beg[7] + 700  # longer than LONG_SEGMENT
        ref = np.full(beg.size, -1)
        for k in range(beg.size):
            locmax, props = scipy.signal.find_peaks(x[beg[k]:end[k]], prominence=(None, None))
            if locmax.size:
                ref[k] = beg[k] + locmax[np.argmax(props["prominences"])]
        np.testing.assert_array_equal(beats.most_prominent(x, beg, end), ref)


def test_a_channel_without_beats_says_so():
    from resp_sep.errors import InputError

    t = np.arange(120 * 128) / 128
    x = np.sin(2 * np.pi * 0.25 * t)  # breathing and 10 spikes in 2 min: not a heart
    x[np.arange(10) * 1500 + 700] += 5.0
    ctx = SignalContext(x, 128.0, "ecg")
    with pytest.raises(InputError, match="no ECG R-peaks found"):
        ctx.r_peaks()


def test_array_and_file_channels_take_one_path(nights):
    """An array and the file it came from give the same beats (one reading path)."""
    rec = read_recording(nights[1])
    ch = rec.channel("ECG")
    arr = recording_from_arrays({"ECG": (ch.read(), ch.fs)}).channels[0]
    np.testing.assert_array_equal(SignalContext(kind="ecg", channel=ch).r_peaks(),
                                  SignalContext(kind="ecg", channel=arr).r_peaks())
