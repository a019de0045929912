"""Tests of resp_sep.writers: atomic outputs, EDF+/WFDB round trips through resp_sep.io, CSV."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest

from resp_sep import writers
from resp_sep.errors import EXIT_OUTPUT, OutputError
from resp_sep.io import read_recording
from resp_sep.writers import atomic_output, edf_record_duration, write_csv, write_edf, write_wfdb


def _sig(label, fs, data, unit="mV"):
    return {"label": label, "fs": fs, "unit": unit, "data": data}


# ------------------------------------------------------------------------------------ atomic_output


def test_atomic_output_success_moves_temp_onto_final(tmp_path):
    final = tmp_path / "night.edf"
    with atomic_output(final) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".night.edf.") and tmp.name.endswith(".tmp.edf")
        assert not final.exists()  # nothing under the final name while writing
        tmp.write_text("done")
    assert final.read_text() == "done"
    assert os.listdir(tmp_path) == ["night.edf"]


def test_atomic_output_exception_leaves_no_file(tmp_path):
    final = tmp_path / "out.csv"
    with pytest.raises(RuntimeError, match="boom"), atomic_output(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_atomic_output_exception_keeps_existing_file(tmp_path):
    final = tmp_path / "out.csv"
    final.write_text("old")
    with pytest.raises(KeyError), atomic_output(final) as tmp:
        tmp.write_text("new, half written")
        raise KeyError("x")
    assert final.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_atomic_output_oserror_becomes_output_error(tmp_path):
    final = tmp_path / "out.csv"
    with pytest.raises(OutputError) as err, atomic_output(final):
        raise OSError(28, "No space left on device")
    assert err.value.exit_code == EXIT_OUTPUT
    assert str(err.value) == f"{final}: cannot write: No space left on device"
    assert os.listdir(tmp_path) == []


def test_atomic_output_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="cannot write"), atomic_output(tmp_path / "nope" / "out.csv"):
        pass


# -------------------------------------------------------------------------------------------- EDF


@pytest.mark.parametrize(
    "rates, expected",
    [([256], 1.0), ([256, 25, 1], 1.0), ([0.5, 256], 2.0), ([128.5], 2.0), ([1000 / 3], 3.0), ([25.6], 5.0)],
)
def test_edf_record_duration(rates, expected):
    d = edf_record_duration(rates)
    assert d == expected
    for fs in rates:
        assert abs(fs * d - round(fs * d)) < 1e-6


def test_write_edf_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ecg = rng.normal(0, 0.3, 256 * 20)
    resp = np.sin(2 * np.pi * 0.25 * np.arange(int(25.6 * 20)) / 25.6) * 3 + 10
    flat = np.full(20, 2.5)
    start = dt.datetime(2021, 3, 4, 22, 15, 30)
    path = write_edf(
        tmp_path / "rec.edf",
        [_sig("ECG", 256, ecg), _sig("Resp", 25.6, resp, "a.u."), _sig("Constant", 1, flat, "")],
        annotations=[(1.5, 0, "inhalation onset"), (3.25, 2.0, "apnea")],
        start_time=start,
    )
    assert path == tmp_path / "rec.edf"
    rec = read_recording(path)
    assert rec.format == "edf+"
    assert rec.labels == ["ECG", "Resp", "Constant"]
    assert [c.fs for c in rec.channels] == [256.0, 25.6, 1.0]
    assert [c.unit for c in rec.channels] == ["mV", "a.u.", ""]
    assert [c.n_samples for c in rec.channels] == [ecg.size, resp.size, flat.size]
    assert rec.start_time == start
    for ch, x in zip(rec.channels, (ecg, resp, flat)):
        y = ch.read()
        span = max(np.ptp(x), 2.0)  # constant signals get a +-1 range
        step = span * 1.05 / 65535  # 16-bit quantisation of the range plus its margin
        assert np.max(np.abs(y - x)) <= step / 2 + 1e-9, ch.label
    ann = [(a.onset_s, a.duration_s, a.label) for a in rec.annotations]
    assert ann == [(1.5, 0.0, "inhalation onset"), (3.25, 2.0, "apnea")]


def test_write_edf_pads_partial_record_with_last_value(tmp_path):
    x = np.linspace(-1, 1, 256 * 3 + 100)
    rec = read_recording(write_edf(tmp_path / "p.edf", [_sig("X", 256, x)]))
    y = rec.channels[0].read()
    assert y.size == 256 * 4
    assert np.allclose(y[: x.size], x, atol=1e-4)
    assert np.allclose(y[x.size:], x[-1], atol=1e-4)


def test_write_edf_truncates_labels_and_keeps_many_annotations(tmp_path):
    x = np.zeros(10 * 100)
    x[::7] = 1.0
    ann = [(0.2 * i, 0, f"event {i}") for i in range(45)]  # more annotations than data records
    rec = read_recording(write_edf(tmp_path / "a.edf", [_sig("A very long channel label", 100, x)], ann))
    assert rec.labels == ["A very long chan"]
    assert len(rec.annotations) == 45
    assert [a.label for a in rec.annotations] == [f"event {i}" for i in range(45)]


def test_write_edf_refuses_nan_and_leaves_nothing(tmp_path):
    x = np.ones(512)
    x[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_edf(tmp_path / "n.edf", [_sig("X", 256, x)])
    assert os.listdir(tmp_path) == []


def test_write_edf_unwritable_folder(tmp_path):
    with pytest.raises(OutputError):
        write_edf(tmp_path / "missing" / "x.edf", [_sig("X", 256, np.ones(256))])


# ------------------------------------------------------------------------------------------- WFDB


def test_write_wfdb_round_trip(tmp_path):
    x = np.sin(np.arange(2500) / 20.0)
    y = np.cos(np.arange(2500) / 7.0) * 50
    start = dt.datetime(2020, 1, 2, 3, 4, 5)
    hea = write_wfdb(tmp_path / "rec01.hea", [_sig("ECG", 250, x), _sig("Pleth", 250, y, "a.u.")],
                     start_time=start, comments=["simulated"])
    assert hea == tmp_path / "rec01.hea"
    assert sorted(os.listdir(tmp_path)) == ["rec01.dat", "rec01.hea"]
    rec = read_recording(hea)
    assert rec.labels == ["ECG", "Pleth"]
    assert [c.fs for c in rec.channels] == [250.0, 250.0]
    assert [c.unit for c in rec.channels] == ["mV", "au"]  # a dot would break the header
    assert rec.start_time == start
    for ch, v in zip(rec.channels, (x, y)):
        assert np.max(np.abs(ch.read() - v)) <= np.ptp(v) / 65000


def test_write_wfdb_refuses_mixed_rates(tmp_path):
    with pytest.raises(ValueError, match="one sampling rate"):
        write_wfdb(tmp_path / "r", [_sig("A", 250, np.ones(250)), _sig("B", 125, np.ones(125))])
    with pytest.raises(ValueError, match="record name"):
        write_wfdb(tmp_path / "bad name", [_sig("A", 250, np.ones(250))])
    assert os.listdir(tmp_path) == []


# -------------------------------------------------------------------------------------------- CSV


def test_write_csv_header_and_values(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "CSV_CHUNK_ROWS", 7)  # exercise several chunks
    t = np.arange(25) / 25.0
    r = np.linspace(10, 20, 25)
    r[3] = np.nan
    path = write_csv(tmp_path / "rate.csv", ["time_s", "rate_bpm", "ok"], [t, r, np.arange(25) % 2],
                     fmt=["%.2f", "%.1f", "%d"])
    lines = path.read_text().splitlines()
    assert lines[0] == "time_s,rate_bpm,ok"
    assert len(lines) == 26
    assert lines[1] == "0.00,10.0,0"
    assert lines[4] == "0.12,nan,1"
    assert lines[-1] == "0.96,20.0,0"
    back = np.genfromtxt(path, delimiter=",", skip_header=1)
    assert np.allclose(back[:, 0], t, atol=0.005)


def test_write_csv_empty_and_mismatch(tmp_path):
    p = write_csv(tmp_path / "e.csv", ["a", "b"], [np.zeros(0), np.zeros(0)])
    assert p.read_text() == "a,b\n"
    with pytest.raises(ValueError, match="differ in length"):
        write_csv(tmp_path / "m.csv", ["a", "b"], [np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match="header names"):
        write_csv(tmp_path / "m.csv", ["a"], [np.zeros(3), np.zeros(3)])
    assert not (tmp_path / "m.csv").exists()


def test_write_edf_bytes_equal_pyedflib_write_samples(tmp_path, monkeypatch):
    """The record loop that replaced pyedflib's writeSamples writes the same bytes."""
    import pyedflib

    rng = np.random.default_rng(0)
    start = dt.datetime(2026, 1, 2, 22, 30, 5)
    sigs = [_sig("Resp", 25.0, rng.standard_normal(25 * 100 + 7).astype(np.float32), "a.u."),
            _sig("ECG", 256.0, rng.standard_normal(256 * 100)), _sig("Slow", 0.5, rng.standard_normal(51))]
    ann = [(1.5, 0.0, "mark"), (40.0, 2.0, "event")]
    write_edf(tmp_path / "new.edf", sigs, annotations=ann, start_time=start)

    def old(writer, data, spr):
        writer.writeSamples(data, digital=True)

    monkeypatch.setattr(writers, "_write_records", old)
    write_edf(tmp_path / "old.edf", sigs, annotations=ann, start_time=start)
    assert (tmp_path / "new.edf").read_bytes() == (tmp_path / "old.edf").read_bytes()
    assert pyedflib.EdfReader(str(tmp_path / "new.edf")).getNSamples()[0] >= 25 * 100 + 7
