"""resp_sep.filters, the breath detector and the Kubios correction against NeuroKit2: the same numbers without it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from resp_sep import filters


def _signal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal(n)) * 0.01 + np.sin(np.arange(n) * 0.21) + 0.1 * rng.standard_normal(n)


@pytest.mark.parametrize("fs", [50.0, 99.0, 100.0, 128.0, 250.0, 256.0, 360.0, 500.0])
def test_cleaning_equals_neurokit2(fs):
    import neurokit2 as nk

    x = _signal(int(30 * fs) + 7, int(fs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(filters.ecg_clean(x, fs), nk.ecg_clean(x, sampling_rate=fs))
        if fs >= 20:
            np.testing.assert_array_equal(filters.ppg_clean(x, fs), nk.ppg_clean(x, sampling_rate=fs))


@pytest.mark.parametrize("method", sorted(filters.ECG_RSP))
def test_ecg_rsp_and_signal_filter_equal_neurokit2(method):
    import neurokit2 as nk

    rate = 60 + _signal(6000, 3)
    np.testing.assert_array_equal(filters.ecg_rsp(rate, 10.0, method), nk.ecg_rsp(rate, sampling_rate=10.0, method=method))
    for lo, hi, order in ((0.1, 0.7, 2), (0.05, 1.0, 2), (None, 0.5, 4), (0.3, None, 3)):
        np.testing.assert_array_equal(filters.butterworth(rate, 25.0, lo, hi, order),
                                      nk.signal_filter(rate, sampling_rate=25.0, lowcut=lo, highcut=hi,
                                                       method="butterworth", order=order))


def test_breath_detector_equals_neurokit2():
    """The khodadad2018 detector of resp_sep.rate gives NeuroKit2's troughs and peaks."""
    import neurokit2 as nk

    from resp_sep.rate import _khodadad

    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(300, 5000))
        t = np.arange(n) / 25.0
        y = np.sin(2 * np.pi * np.cumsum(rng.uniform(0.1, 0.5, n)) / 25.0) + 0.3 * rng.standard_normal(n)
        y = filters.butterworth(y, 25.0, 0.05, 1.0, 2)
        if trial % 5 == 0:
            y = np.round(y, 1)  # exact zeros: crossings that do not alternate
        troughs, peaks = _khodadad(y, 25.0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                info = nk.rsp_findpeaks(y, sampling_rate=25.0, method="khodadad2018")
            want_t, want_p = np.asarray(info["RSP_Troughs"], int), np.asarray(info["RSP_Peaks"], int)
            k = min(want_t.size, want_p.size)
            want_t, want_p = want_t[:k], want_p[:k]
        except (IndexError, ValueError):
            want_t = want_p = np.zeros(0, int)
        np.testing.assert_array_equal(troughs, want_t, err_msg=str(trial))
        np.testing.assert_array_equal(peaks, want_p, err_msg=str(trial))
        assert t.size == n


def test_kubios_correction_equals_neurokit2():
    """Extra, missed, ectopic and long/short beats are corrected as NeuroKit2 corrects them."""
    from neurokit2.signal.signal_fixpeaks import _correct_artifacts

    from resp_sep.kubios import _correct, _find_artifacts

    rng = np.random.default_rng(5)
    for _ in range(30):
        rr = rng.normal(0.85, 0.04, 600)
        peaks = np.cumsum(np.round(rr * 250)).astype(int)
        for k in rng.choice(np.arange(20, 580), 12, replace=False):
            kind = rng.integers(0, 3)
            if kind == 0:
                peaks[k] -= 90  # ectopic
            elif kind == 1:
                peaks = np.insert(peaks, k, peaks[k] - 40)  # extra
            else:
                peaks = np.delete(peaks, k)  # missed
        peaks = np.unique(peaks)
        art = _find_artifacts(peaks, 250.0)
        assert sum(len(v) for v in art.values()) > 0
        np.testing.assert_array_equal(_correct(art, peaks), _correct_artifacts(art, peaks))


def test_extraction_does_not_import_neurokit2(tmp_path):
    """``respsep extract`` (waveform, rates, breaths) runs without NeuroKit2, pandas or torch (~200 MB, ~2 s)."""
    import subprocess
    import sys

    from resp_sep.simulate import simulate, write_simulation

    rec = write_simulation(simulate(duration_s=120, fs=128.0, seed=1), tmp_path / "a.edf")
    args = ["extract", str(rec), "--out", str(tmp_path / "a.csv"), "--rates", str(tmp_path / "r.csv"),
            "--breaths", str(tmp_path / "b.csv"), "-q"]
    code = (f"import sys; from resp_sep.cli import main; assert main({args!r}) == 0; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('neurokit2', 'pandas', 'sklearn', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
