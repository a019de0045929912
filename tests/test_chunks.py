"""One reading pass and block-wise readers (resp_sep.chunks) against whole-array numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from resp_sep import chunks
from resp_sep.io import read_recording, recording_from_arrays
from resp_sep.preprocess import fill_gaps

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _random_channel(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal(n).round(int(rng.integers(0, 3)))  # quantised: ties in the median
    for _ in range(int(rng.integers(0, 5))):
        s = int(rng.integers(0, n))
        x[s:s + int(rng.integers(1, 60))] = np.nan
    if rng.random() < 0.3:
        x[:7] = np.nan
    if rng.random() < 0.3:
        x[-5:] = np.nan
    if rng.random() < 0.5:
        s = int(rng.integers(0, n))
        x[s:s + 300] = 1.25  # a constant run
    return x


def test_scan_and_bridging_equal_numpy_in_any_blocks():
    """Median of the bridged channel, bridged ranges, first/last sample: np.median / np.interp, bit for bit."""
    rng = np.random.default_rng(1)
    for _trial in range(25):
        n = int(rng.integers(50, 5000))
        x = _random_channel(rng, n)
        ch = recording_from_arrays({"ECG": (x, 100.0)}).channels[0]
        want = fill_gaps(x)
        for block in (7, 64, 1000, 10**6):
            for whole_below in (0, 10**9):  # selected by radix passes, or held and np.median
                st = chunks.scan(ch, block=block, whole_below=whole_below)
                assert st.median == np.median(want)
                assert st.n_finite == np.isfinite(x).sum()
                assert st.lo == np.nanmin(x) and st.hi == np.nanmax(x)
                assert st.first == want[0] and st.last == want[-1]
                br = chunks.Bridged(ch, st)
                np.testing.assert_array_equal(br(0, n), want)
                a = int(rng.integers(0, n))
                b = int(rng.integers(a, n + 1))
                np.testing.assert_array_equal(br(a, b), want[a:b])


def test_runs_of_missing_and_constant_samples():
    x = np.sin(np.arange(3000) * 0.3)
    x[100:150] = np.nan
    x[1000:1400] = 0.0  # 4 s at 100 Hz: a constant run
    x[2000:2100] = 7.0  # 1 s: too short to count
    ch = recording_from_arrays({"ECG": (x, 100.0)}).channels[0]
    for block in (33, 10_000):
        st = chunks.scan(ch, block=block, whole_below=0)
        np.testing.assert_array_equal(st.nan_runs, [[100, 150]])
        np.testing.assert_array_equal(st.flat_runs, [[1000, 1400]])
        assert st.n_flat == 400 and st.usable_s == pytest.approx((3000 - 50 - 400) / 100)
    grid = chunks.missing_on_grid(st, 300, 10.0)
    assert grid[10:15].all() and grid[100:140].all() and not grid[200:210].any()
    assert grid.sum() == 5 + 40


def test_digital_median_counts_integers(tmp_path, make_edf):
    """EDF: the median from one counting pass of the 16-bit samples equals np.median of the physical values."""
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.standard_normal(30 * 256)) * 0.01
    p = make_edf("a.edf", {"ECG": (256, x)})
    ch = read_recording(p).channels[0]
    assert ch.digital is not None and ch.digital.bits == 16
    y = ch.read()
    for n_cut in (0, 1):  # even and odd counts
        for block in (1000, 7777):
            st = chunks.scan(ch, block=block, whole_below=0)
            assert st.median == np.median(y)
    bdf = make_edf("b.bdf", {"ECG": (256, x)})
    ch = read_recording(bdf).channels[0]
    assert ch.digital.bits == 24  # two radix passes
    assert chunks.scan(ch, block=999, whole_below=0).median == np.median(ch.read())


@pytest.mark.skipif(not (DATA / "cinc2015-wfdb").is_dir(), reason="../shared/data/cinc2015-wfdb absent")
def test_wfdb_with_missing_samples_scans_like_numpy():
    """A CinC record with NaN runs (published so): digital counting is not used, the float selection is exact."""
    ch = read_recording(DATA / "cinc2015-wfdb" / "v212s.hea").channel("II")
    x = ch.read()
    assert np.isnan(x).any()
    want = fill_gaps(x)
    for block, whole in ((10_000, 0), (1 << 20, 1 << 30)):
        st = chunks.scan(ch, block=block, whole_below=whole)
        assert st.median == np.median(want)
        np.testing.assert_array_equal(chunks.Bridged(ch, st)(0, x.size), want)


def test_checks_refuse_with_one_line():
    from resp_sep.errors import InputError

    def refuse(x, fs=100.0, **kw):
        with pytest.raises(InputError) as e:
            chunks.check(chunks.array_stats(np.asarray(x, dtype=float), fs), "ECG", "f.edf", **kw)
        return str(e.value)

    assert "only NaN" in refuse(np.full(100, np.nan))
    assert "mostly NaN/missing (60%)" in refuse(np.r_[np.full(60, np.nan), np.arange(40.0)])
    assert "constant (flat line)" in refuse(np.ones(100))
    assert "sampled at 10 Hz" in refuse(np.arange(100.0), fs=10.0)
    assert "too short" in refuse(np.arange(100.0), min_s=10.0, what="ECG")


def test_zero_padded_resampling_by_output_ranges():
    from scipy.signal import resample_poly

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal(20_000))
    for z in (x, x[:-1], x[:-333]):  # odd and even lengths, ends anywhere
        ch = recording_from_arrays({"ECG": (z, 128.0)}).channels[0]
        st = chunks.scan(ch)
        rd = chunks.Bridged(ch, st)
        for fs_in, fs_out in ((128.0, 10.0), (256.0, 100.0), (128.0, 100.0), (600.0, 500.0), (100.0, 100.0)):
            r = chunks.Resampled(rd, z.size, fs_in, fs_out, st.median)
            ref = z - st.median if r.identity else resample_poly(z - st.median, r.up, r.down)
            assert r.n_out == ref.size
            cuts = [0, 1, 17, r.n_out // 3, r.n_out // 3 + 1, r.n_out - 5, r.n_out]
            got = np.concatenate([r(a, b) for a, b in zip(cuts[:-1], cuts[1:])])
            np.testing.assert_array_equal(got, ref)


def test_spill_keeps_to_memory_with_a_note_when_the_temporary_folder_fails(monkeypatch):
    import tempfile

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    sp = chunks.Spill()
    assert "temporary folder cannot be written" in sp.note and "memory" in sp.note
    sp.append(np.arange(10.0))
    sp.append(np.arange(5.0))
    np.testing.assert_array_equal(sp(8, 12), [8, 9, 0, 1])
    np.testing.assert_array_equal(sp.take(np.array([[0, 1], [10, 11]])), [[0, 1], [0, 1]])


def test_wfdb_checksum_compared_in_the_reading_pass(tmp_path):
    """A long WFDB record is never read whole: the reading pass still sums its samples for the checksum."""
    from resp_sep.simulate import simulate, write_simulation

    hea = write_simulation(simulate(duration_s=120, fs=128.0, seed=4), tmp_path / "ck", fmt="wfdb")
    dat = hea.with_suffix(".dat")
    raw = bytearray(dat.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 40] = b"\x7f" * 40
    dat.write_bytes(bytes(raw))
    rec = read_recording(hea)
    chunks.scan(rec.channel("ECG"), block=1000, whole_below=0)  # many blocks, none the whole signal
    assert any("'ECG'" in w and "checksum" in w for w in rec.warnings), rec.warnings


def test_odd_header_digits_read_by_one_formula(tmp_path):
    """A physical maximum such as 5.834222 (which edflib parses 1 ulp off): one scaling formula, no fallback."""
    import pyedflib

    x = np.random.default_rng(0).uniform(-5.5, 5.8, 25_600)
    w = pyedflib.EdfWriter(str(tmp_path / "d.edf"), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders([{"label": "ECG", "dimension": "mV", "sample_frequency": 256, "physical_max": 5.834222,
                         "physical_min": -5.56481, "digital_max": 32767, "digital_min": -32768,
                         "prefilter": "", "transducer": ""}])
    w.writeSamples([x])
    w.close()
    with pyedflib.EdfReader(str(tmp_path / "d.edf")) as f:
        d = f.readSignal(0, digital=True).astype(np.float64)
        theirs = f.readSignal(0)
    ch = read_recording(tmp_path / "d.edf").channel("ECG")
    bitvalue = (5.834222 - -5.56481) / 65535
    ours = bitvalue * (5.834222 / bitvalue - 32767 + d)
    np.testing.assert_array_equal(ch.read(), ours)  # the header's numbers as Python parses them
    np.testing.assert_allclose(ch.read(), theirs, rtol=0, atol=1e-14)  # edflib's: within its parsing error
    np.testing.assert_array_equal(ch.read(100, 20_000), ours[100:20_000])
