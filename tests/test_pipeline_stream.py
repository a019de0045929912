"""The separator always streams the channel in bounded blocks: the same respiration as whole arrays."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_tiny_checkpoint

from resp_sep.pipeline import ExtractOptions, respiration
from resp_sep.stream import BLOCK


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    from resp_sep.simulate import simulate, write_simulation

    d = tmp_path_factory.mktemp("night")
    fs = 128.0
    sim = simulate(duration_s=2400, fs=fs, seed=11)  # 307,200 samples: more than one read block
    assert sim.ecg.size > BLOCK
    return str(write_simulation(sim, d / "night.edf")), make_tiny_checkpoint(d / "tiny.pt", resp_encoder=1)


def _whole_array_reference(sep, x: np.ndarray, fs: float, n_grid: int) -> np.ndarray:
    """Separator.extract on the whole (gap-filled) channel: the reference path, kept for this comparison."""
    from resp_sep.preprocess import fill_gaps
    from resp_sep.sources import GRID_FS, fit_length

    y = sep.extract(fill_gaps(x), fs, out_fs=GRID_FS, hop=6144)  # ExtractOptions.hop_s = 30.72 s
    return fit_length(np.asarray(y, dtype=np.float64), n_grid)


def test_streamed_separator_equals_whole_array(night, monkeypatch):
    from resp_sep import io

    path, ck = night
    opts = ExtractOptions(method="separator", signal="ecg", model=ck, device="cpu")
    seps: dict = {}
    whole = []
    orig = io.Channel.read

    def read(self, start=0, stop=None):
        if start == 0 and (stop is None or stop >= self.n_samples) and self.n_samples > BLOCK:
            whole.append(self.label)
        return orig(self, start, stop)

    with monkeypatch.context() as m:  # the streamed path never reads a whole channel
        m.setattr(io.Channel, "read", read)
        a = respiration(path, opts, seps)
    assert whole == []
    rec = io.read_recording(path)
    ch = rec.channel("ECG")
    wa = a.sources["separator_ecg"].wave
    assert np.isfinite(wa).all()
    np.testing.assert_array_equal(wa, _whole_array_reference(seps["ecg"], ch.read(), ch.fs, wa.size))


def test_separator_streams_wfdb_with_gaps(tmp_path):
    """WFDB input with missing samples: streamed too (bridged as np.interp bridges them), NaN where the input was."""
    from resp_sep.io import read_recording
    from resp_sep.simulate import simulate
    from resp_sep.writers import write_wfdb

    ck = make_tiny_checkpoint(tmp_path / "tiny.pt", resp_encoder=1)
    sim = simulate(duration_s=300, fs=128.0, seed=12)
    ecg = sim.ecg.copy()
    ecg[10_000:12_000] = np.nan
    write_wfdb(tmp_path / "g", [{"label": "ECG", "fs": 128.0, "unit": "mV", "data": ecg}])
    opts = ExtractOptions(method="separator", signal="ecg", model=ck, device="cpu")
    seps: dict = {}
    r = respiration(str(tmp_path / "g.hea"), opts, seps)
    ch = read_recording(tmp_path / "g.hea").channel("ECG")
    x = ch.read()
    assert np.isnan(x).sum() == 2000
    w = r.sources["separator_ecg"].wave
    ref = _whole_array_reference(seps["ecg"], x, ch.fs, w.size)
    gap = np.zeros(w.size, bool)
    gap[int(10_000 / 12.8):int(np.ceil(12_000 / 12.8))] = True
    assert np.isnan(w[gap]).all() and np.isfinite(w[~gap]).all()
    np.testing.assert_array_equal(w[~gap], ref[~gap])
