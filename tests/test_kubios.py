"""resp_sep.kubios gives NeuroKit2's Kubios-corrected peaks exactly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from resp_sep.kubios import fixpeaks_kubios


def _nk(peaks, fs):
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(nk.signal_fixpeaks(peaks, sampling_rate=fs, method="Kubios")[1])


def _artefacts(seed: int, n: int = 6000) -> np.ndarray:
    """Beats with ectopic, missed and extra beats and a run of irregular ones (what the correction must find)."""
    rng = np.random.default_rng(seed)
    p = np.cumsum(rng.normal(230, 10, n)).astype(int)
    idx = rng.choice(np.arange(5, n - 100), 240, replace=False)
    p[idx[:60]] += rng.integers(-90, 90, 60)  # ectopic / misplaced
    p = np.delete(p, idx[60:120])  # missed
    p = np.sort(np.concatenate([p, p[np.sort(idx[120:180])] + rng.integers(40, 120, 60)]))  # extra
    p[3000:3040] += rng.integers(-60, 60, 40)  # an irregular stretch
    return np.unique(p)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_corrected_peaks_as_neurokit(seed):
    p = _artefacts(seed)
    a, b = _nk(p, 256.0), fixpeaks_kubios(p, 256.0)
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, p)  # the correction did something


def test_regular_and_tiny_series():
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 3, 4, 7, 50, 3000):
        p = np.cumsum(rng.integers(150, 170, n))
        np.testing.assert_array_equal(_nk(p, 128.0), fixpeaks_kubios(p, 128.0))
