"""The separator-only method reads the recording in bounded blocks: same respiration as whole arrays."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_tiny_checkpoint

from resp_sep.api import extract_with
from resp_sep.outputs import OutputOptions
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


def test_streamed_separator_equals_whole_array(night, tmp_path, monkeypatch):
    import resp_sep.preprocess

    path, ck = night
    opts = ExtractOptions(method="separator", signal="ecg", model=ck, device="cpu")
    seps: dict = {}
    with monkeypatch.context() as m:  # the streamed path never loads the whole channel
        m.setattr(resp_sep.preprocess, "load_signal", lambda *a, **k: pytest.fail("whole channel loaded"))
        a = respiration(path, opts, seps)
    b = respiration(path, dataclasses.replace(opts, stream=False), seps)
    wa, wb = a.sources["separator_ecg"].wave, b.sources["separator_ecg"].wave
    assert wa.shape == wb.shape and np.isfinite(wa).all()
    np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.wave, b.wave)
    assert a.channels == b.channels and a.duration_s == pytest.approx(b.duration_s)
    # and the files written are the same bytes
    extract_with(path, opts, OutputOptions(), seps).save(str(tmp_path / "a.csv"), rates=str(tmp_path / "ra.csv"))
    extract_with(path, dataclasses.replace(opts, stream=False), OutputOptions(), seps).save(
        str(tmp_path / "b.csv"), rates=str(tmp_path / "rb.csv"))
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "ra.csv").read_bytes() == (tmp_path / "rb.csv").read_bytes()
