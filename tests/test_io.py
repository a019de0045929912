"""Readers: EDF+ (MARSH), BDF+, WFDB (CinC, MIMIC multi-segment, MIT-BIH); laziness; finding files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from resp_sep.io import find_recordings, read_recording

MARSH_LABELS = ["ECG", "Pleth", "Nasal Therm", "Thorax IP"]


# ------------------------------------------------------------------------------------- MARSH EDF+


@pytest.mark.parametrize(
    "name, rates, duration_s",
    [
        ("marsh-0005", [250, 500, 1000, 250], 906.0),
        ("marsh-0018", [250, 250, 500, 250], 897.0),  # one of the four with 250 Hz Pleth
    ],
)
def test_marsh_header(shared_data, name, rates, duration_s):
    rec = read_recording(shared_data / "marsh-edf" / f"{name}.edf")
    assert rec.format == "edf+"
    assert rec.labels == MARSH_LABELS
    assert [c.fs for c in rec.channels] == rates
    assert rec.channels[0].unit == "mV"
    for c in rec.channels:
        assert c.duration_s == pytest.approx(duration_s)
        assert c.n_samples == round(duration_s * c.fs)
    assert rec.duration_s == pytest.approx(duration_s)
    assert 12 * 60 < rec.duration_s < 18 * 60  # "~15 min each"


def test_marsh_annotations_and_samples(shared_data):
    rec = read_recording(shared_data / "marsh-edf" / "marsh-0005.edf")
    ann = rec.annotations
    labels = {a.label for a in ann}
    assert "end-inspiration thorax" in labels
    assert "end-inspiration nasal" in labels
    thor = [a.onset_s for a in ann if a.label == "end-inspiration thorax"]
    # hand-marked breaths of a resting adult: 6-30 breaths/min over the recording
    assert 6 * rec.duration_s / 60 < len(thor) < 30 * rec.duration_s / 60
    assert all(0 <= t <= rec.duration_s for t in thor)
    assert np.all(np.diff(thor) >= 0)  # sorted (the source has a few duplicated marks)

    ecg = rec.channel("ECG").read()
    assert ecg.dtype == np.float64 and ecg.shape == (226_500,)
    assert np.all(np.isfinite(ecg))
    assert 0.2 < np.ptp(ecg) < 20  # millivolts, not raw counts
    # case/punctuation-insensitive channel lookup
    assert rec.channel("thorax-ip").label == "Thorax IP"


def test_marsh_header_is_lazy(shared_data, monkeypatch):
    """Opening a recording reads no samples; Channel.read reads exactly one channel."""
    from resp_sep import io

    calls = []
    orig = io._EdfFile.column

    def counting(self, sig, *a, **kw):
        calls.append(sig.label)
        return orig(self, sig, *a, **kw)

    monkeypatch.setattr(io._EdfFile, "column", counting)
    rec = read_recording(shared_data / "marsh-edf" / "marsh-0005.edf")
    _ = rec.labels, rec.duration_s, rec.annotations
    assert calls == []
    x = rec.channel("Pleth").read()
    assert calls == ["Pleth"]
    assert x.size == rec.channel("Pleth").n_samples


def test_edf_reads_equal_pyedflib(shared_data):
    """One reader, one scaling formula: every MARSH channel, whole and by range, equals pyedflib's samples."""
    import pyedflib

    p = shared_data / "marsh-edf" / "marsh-0018.edf"
    rec = read_recording(p)
    with pyedflib.EdfReader(str(p)) as f:
        for i, c in enumerate(rec.channels):
            want = f.readSignal(i)
            np.testing.assert_array_equal(c.read(), want)
            np.testing.assert_array_equal(c.read(1234, 98_765), want[1234:98_765])
            assert c.fs == f.getSampleFrequency(i)
        onsets, _, labels = f.readAnnotations()
    assert [a.label for a in rec.annotations] == list(labels)
    np.testing.assert_array_equal([a.onset_s for a in rec.annotations], onsets)


def test_wfdb_header_is_lazy(shared_data, monkeypatch):
    import wfdb

    calls = []
    orig = wfdb.rdrecord

    def counting(*a, **kw):
        calls.append(kw.get("channel_names"))
        return orig(*a, **kw)

    monkeypatch.setattr(wfdb, "rdrecord", counting)
    rec = read_recording(shared_data / "cinc2015-wfdb" / "v100s.hea")
    assert calls == []
    rec.channel("RESP").read()
    assert calls == [["RESP"]]


# ------------------------------------------------------------------------------------------- BDF


def test_bdf_round_trip(make_edf):
    t = np.arange(10 * 256) / 256
    ecg = 1.5 * np.sin(2 * np.pi * 1.1 * t)
    resp = 200.0 * np.sin(2 * np.pi * 0.25 * np.arange(10 * 32) / 32)
    p = make_edf("night.bdf", {"EKG": (256, ecg), "Thor": (32, resp)})
    assert p.read_bytes()[:8] == b"\xffBIOSEMI"
    rec = read_recording(p)
    assert rec.format == "bdf+"
    assert rec.labels == ["EKG", "Thor"]
    assert [c.fs for c in rec.channels] == [256, 32]
    assert [c.n_samples for c in rec.channels] == [2560, 320]
    assert rec.duration_s == pytest.approx(10.0)
    # 24-bit quantisation: far below 1e-4 of the range
    np.testing.assert_allclose(rec.channel("EKG").read(), ecg, atol=3.0 / 2**23 * 2)
    np.testing.assert_allclose(rec.channel("Thor").read(), resp, atol=400.0 / 2**23 * 2)


def test_plain_edf_round_trip(make_edf):
    import pyedflib

    x = np.sin(2 * np.pi * np.arange(5 * 100) / 100)
    rec = read_recording(make_edf("a.edf", {"ECG": (100, x)}, file_type=pyedflib.FILETYPE_EDF))
    assert rec.format == "edf"
    np.testing.assert_allclose(rec.channel("ECG").read(), x, atol=2.0 / 2**16 * 2)
    assert rec.annotations == []


# ------------------------------------------------------------------------------------------- WFDB


def test_cinc_crlf_header(shared_data):
    hea = shared_data / "cinc2015-wfdb" / "v100s.hea"
    assert b"\r\n" in hea.read_bytes()  # as published
    rec = read_recording(hea)
    assert rec.format == "wfdb"
    assert rec.labels == ["II", "V", "PLETH", "RESP"]  # no stray '\r' in the last field
    assert [c.fs for c in rec.channels] == [250.0] * 4
    assert [c.n_samples for c in rec.channels] == [75_000] * 4
    assert rec.channel("II").unit == "mV"
    ii = rec.channel("II").read()
    assert ii.shape == (75_000,)
    assert np.isfinite(ii).mean() > 0.99
    assert np.nanmax(np.abs(ii)) < 20  # physical units (mV)
    # the record name without extension and the .mat data file resolve to the same record
    assert read_recording(hea.with_suffix("")).path == hea
    assert read_recording(hea.with_suffix(".mat")).path == hea


def test_mimic_multisegment_041s(shared_data):
    d = shared_data / "mimicdb-wfdb"
    rec = read_recording(d / "041s.hea")
    ch = {c.label: c for c in rec.channels}
    assert set(ch) == {"III", "I", "V", "ABP", "PAP", "PLETH", "RESP"}
    for lead in ("III", "I", "V"):
        assert ch[lead].fs == 500 and ch[lead].n_samples == 8000
    assert ch["RESP"].fs == 125 and ch["RESP"].n_samples == 2000
    assert rec.duration_s == pytest.approx(16.0)
    ecg = ch["III"].read()
    resp = ch["RESP"].read()
    assert ecg.shape == (8000,) and resp.shape == (2000,)
    assert np.all(np.isfinite(ecg)) and np.all(np.isfinite(resp))
    # the merged record is the two segments end to end, each at its own rate
    seg1 = read_recording(d / "041s01.hea").channel("III").read()
    seg2 = read_recording(d / "041s02.hea").channel("III").read()
    assert seg1.shape == seg2.shape == (4000,)
    np.testing.assert_allclose(ecg, np.concatenate([seg1, seg2]))


def test_mimic_03700181(shared_data):
    rec = read_recording(shared_data / "mimicdb-wfdb" / "03700181")  # record name, no extension
    assert rec.labels == ["MCL1", "ABP", "RESP"]
    mcl1, abp, resp = rec.channels
    assert mcl1.fs == 500 and mcl1.n_samples == 300_000
    assert abp.fs == resp.fs == 125 and resp.n_samples == 75_000
    assert rec.duration_s == pytest.approx(600.0)
    assert rec.start_time is not None and rec.start_time.year == 1994


def test_mitdb_100(shared_data):
    rec = read_recording(shared_data / "mitdb-wfdb" / "100.hea")
    assert rec.labels == ["MLII", "V5"]
    assert [c.fs for c in rec.channels] == [360.0, 360.0]
    assert rec.channels[0].n_samples == 650_000
    assert rec.duration_s == pytest.approx(650_000 / 360)
    ann = rec.annotations
    beats = [a for a in ann if a.label == "atr:N"]
    assert len(ann) > 2000 and len(beats) > 2000  # ~2270 beats in 30 min
    onsets = np.array([a.onset_s for a in ann])
    assert np.all(np.diff(onsets) >= 0) and 0 <= onsets[0] and onsets[-1] <= rec.duration_s


# ---------------------------------------------------------------------------------- find_recordings


def test_find_recordings_folders(shared_data):
    d = shared_data / "mimicdb-wfdb"
    found = [Path(p).name for p in find_recordings([d])]
    assert found == ["03700181.hea", "041s.hea"]  # segments 041s01/041s02 are not listed

    cinc = find_recordings([shared_data / "cinc2015-wfdb"])
    n_records = len((shared_data / "cinc2015-wfdb" / "RECORDS").read_text().split())
    assert len(cinc) == n_records == 58
    assert all(p.endswith(".hea") for p in cinc)

    marsh = find_recordings([shared_data / "marsh-edf"])
    assert len(marsh) == len(list((shared_data / "marsh-edf").glob("*.edf")))
    assert marsh == sorted(marsh)


def test_find_recordings_globs(shared_data):
    cinc = shared_data / "cinc2015-wfdb"
    from_mat = find_recordings([str(cinc / "v1*.mat")])
    from_hea = find_recordings([str(cinc / "v1*.hea")])
    assert from_mat == from_hea and len(from_mat) > 1
    assert all(Path(p).suffix == ".hea" and Path(p).name.startswith("v1") for p in from_mat)
    # the same record given twice (glob and explicit) is listed once, in input order
    both = find_recordings([str(cinc / "v100s.hea"), str(cinc / "v1*.mat")])
    assert both[0].endswith("v100s.hea") and len(both) == len(from_mat)


def test_find_recordings_tmp(tmp_path, make_edf):
    make_edf("b.edf")
    make_edf("a.BDF")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    make_edf("sub/c.edf")
    names = [Path(p).relative_to(tmp_path).as_posix() for p in find_recordings([tmp_path])]
    assert names == ["a.BDF", "b.edf", "sub/c.edf"]
    flat = [Path(p).name for p in find_recordings([tmp_path], recursive=False)]
    assert flat == ["a.BDF", "b.edf"]
    # missing files and unmatched globs are kept, so the caller reports them
    missing = str(tmp_path / "nope.edf")
    assert find_recordings([missing]) == [missing]
    nomatch = str(tmp_path / "zz*.edf")
    assert find_recordings([nomatch]) == [nomatch]
    # a folder without recordings is kept too (not dropped silently)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_recordings([empty]) == [str(empty)]


def test_find_recordings_multisegment_copy(tmp_path, shared_data):
    """Segment detection works on a copy too (and a layout-less fixed-layout master header)."""
    for f in (shared_data / "mimicdb-wfdb").glob("041s*"):
        shutil.copy(f, tmp_path / f.name)
    assert [Path(p).name for p in find_recordings([tmp_path])] == ["041s.hea"]
