"""A corpus of broken, lying and awkward inputs, built at test time.

Every broken input is refused by ``respsep info`` (and a subset by ``respsep extract``) with
exit code 3 and exactly one line naming the file and the problem, and leaves no output behind.
Awkward but valid inputs (a trailing partial EDF record, a Latin-1 label, a WFDB header without
a length, ...) are read, with a warning line when something was ignored. Synthetic files are
written with pyedflib/numpy; a few cases derive from ``../shared/data`` and skip without it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyedflib
import pytest
from conftest import SHARED_DATA, make_tiny_checkpoint, write_edf
from conftest import bytes_file as _bytes
from conftest import one_megahertz_edf as _one_megahertz

from resp_sep.errors import EXIT_INPUT

FS = 250
SECONDS = 10


# --------------------------------------------------------------------------------------- builders


def _sine(fs: int = FS, seconds: int = SECONDS, f: float = 1.2) -> np.ndarray:
    return np.sin(2 * np.pi * f * np.arange(seconds * fs) / fs)


def _edf(d: Path, name: str = "src.edf", plus: bool = True, bdf: bool = False) -> Path:
    """A valid EDF(+)/BDF(+): ECG at 250 Hz, 10 one-second data records."""
    ft = (pyedflib.FILETYPE_BDFPLUS if plus else pyedflib.FILETYPE_BDF) if bdf else \
        (pyedflib.FILETYPE_EDFPLUS if plus else pyedflib.FILETYPE_EDF)
    return write_edf(d / name, {"ECG": (FS, _sine())}, file_type=ft)


def _ns(raw: bytes) -> int:
    return int(raw[252:256].decode().strip())


def _patch(name: str, field: str, value: bytes, plus: bool = True, signal: int = 0, bdf: bool = False):
    """Builder: a valid file with one header field overwritten (``field`` is a fixed-header offset
    as an int, or a per-signal field name)."""
    sig_fields = {"label": (0, 16), "unit": (96, 8), "pmin": (104, 8), "pmax": (112, 8), "dmin": (120, 8),
                  "dmax": (128, 8), "spr": (216, 8)}

    def build(d: Path) -> Path:
        raw = bytearray(_edf(d, "src_" + name, plus=plus, bdf=bdf).read_bytes())
        if isinstance(field, int):
            off = field
        else:
            base, width = sig_fields[field]
            off = 256 + base * _ns(raw) + width * signal
        raw[off:off + len(value)] = value
        p = d / name
        p.write_bytes(bytes(raw))
        return p

    return build


def _cut(name: str, keep, bdf: bool = False):
    """Builder: a valid file cut to ``keep(size)`` bytes (or extended when larger: zero bytes)."""

    def build(d: Path) -> Path:
        raw = _edf(d, "src_" + name, bdf=bdf).read_bytes()
        n = keep(len(raw))
        p = d / name
        p.write_bytes(raw[:n] + b"\0" * max(0, n - len(raw)))
        return p

    return build


def _wfdb(name: str, record_line: str | None = None, signal_lines: list[str] | None = None,
          dat: bytes | None = None, n: int = 2500, crlf: bool = False):
    """Builder: a WFDB record; defaults to one format-16 signal of ``n`` samples at 250 Hz."""

    def build(d: Path) -> Path:
        rl = record_line if record_line is not None else f"{name} 1 {FS} {n}"
        sl = signal_lines if signal_lines is not None else [f"{name}.dat 16 200/mV 16 0 0 0 0 ECG"]
        nl = "\r\n" if crlf else "\n"
        (d / f"{name}.hea").write_bytes((nl.join([rl, *sl]) + nl).encode())
        if dat is not None:
            (d / f"{name}.dat").write_bytes(dat)
        return d / f"{name}.hea"

    return build


def _i16(n: int = 2500) -> bytes:
    return (200 * _sine(seconds=max(1, n // FS))[:n]).astype("<i2").tobytes()


def _fmt212(n: int) -> bytes:
    """``n`` samples (one signal) packed as format 212 (two 12-bit samples in three bytes)."""
    x = (200 * _sine(seconds=max(1, n // FS + 1))[:n]).astype(np.int64) & 0xFFF
    if n % 2:
        x = np.append(x, 0)
    a, b = x[0::2], x[1::2]
    out = np.stack([a & 0xFF, ((a >> 8) & 0x0F) | ((b >> 8) & 0x0F) << 4, b & 0xFF], axis=1).astype(np.uint8)
    return out.tobytes()[: (3 * n + 1) // 2]


def _multi(name: str, seg2_dat_bytes: int | None = None, missing_segment: bool = False):
    """Builder: a two-segment WFDB record (2 x 1000 samples); segment 2's data cut or its header absent."""

    def build(d: Path) -> Path:
        (d / f"{name}.hea").write_text(f"{name}/2 1 {FS} 2000\n{name}_1 1000\n{name}_2 1000\n")
        for k in (1, 2):
            seg = f"{name}_{k}"
            if k == 2 and missing_segment:
                continue
            (d / f"{seg}.hea").write_text(f"{seg} 1 {FS} 1000\n{seg}.dat 16 200/mV 16 0 0 0 0 ECG\n")
            data = _i16(1000)
            if k == 2 and seg2_dat_bytes is not None:
                data = data[:seg2_dat_bytes]
            (d / f"{seg}.dat").write_bytes(data)
        return d / f"{name}.hea"

    return build


def _annotations_only(d: Path) -> Path:
    p = d / "annot_only.edf"
    with pyedflib.EdfWriter(str(p), 0, file_type=pyedflib.FILETYPE_EDFPLUS) as w:
        w.writeAnnotation(1.0, -1, "lights off")
    return p


def _symlink_loop(d: Path) -> Path:
    p = d / "loop.edf"
    os.symlink(p, p)
    return p


def _broken_link(d: Path) -> Path:
    p = d / "dangling.edf"
    os.symlink(d / "gone.edf", p)
    return p


def _fifo(d: Path) -> Path:
    p = d / "pipe.edf"
    os.mkfifo(p)
    return p


def _folder(d: Path) -> Path:
    (d / "folder.edf").mkdir()
    return d / "folder.edf"


def _shared(src: str, name: str, transform):
    """Builder from a ../shared/data record: copy header and data, ``transform(files)`` edits the copy."""

    def build(d: Path) -> Path:
        if not SHARED_DATA.is_dir():
            pytest.skip("../shared/data not present (real recordings are not shipped)")
        stem = Path(src).stem
        folder = SHARED_DATA / Path(src).parent
        for f in folder.glob(stem + ".*"):
            if f.suffix in (".hea", ".dat", ".mat"):
                shutil.copy(f, d / f.name.replace(stem, name))
                (d / f.name.replace(stem, name)).chmod(0o644)
        hea = d / f"{name}.hea"
        hea.write_bytes(hea.read_bytes().replace(stem.encode(), name.encode()))
        transform(d, name)
        return hea

    return build


def _truncate_data(frac: float, suffix: str = ".dat"):
    def t(d: Path, name: str) -> None:
        p = d / f"{name}{suffix}"
        p.write_bytes(p.read_bytes()[: int(p.stat().st_size * frac)])

    return t


def _edit_header(old: bytes, new: bytes, count: int = -1):
    def t(d: Path, name: str) -> None:
        p = d / f"{name}.hea"
        raw = p.read_bytes()
        assert old in raw
        p.write_bytes(raw.replace(old, new, count))

    return t


# name -> (builder, fragment expected in the one-line message); all exit 3
BROKEN = {
    # ---- not a recording at all
    "missing": (lambda d: d / "absent.edf", "no such file"),
    "empty": (_bytes("empty.edf", b""), "empty"),
    "random_bytes": (_bytes("noise.edf", np.random.default_rng(1).bytes(4096)), "not an edf"),
    "short_garbage": (_bytes("tiny.edf", b"0       abc"), "truncated"),
    "text_file": (_bytes("notes.txt", "ECG"), "unsupported file type"),
    "csv_file": (_bytes("ecg.csv", "t,ecg\n0,1\n"), "unsupported file type"),
    "folder": (_folder, "is a folder"),
    "symlink_loop": (_symlink_loop, "link loop"),
    "broken_symlink": (_broken_link, "broken symbolic link"),
    "fifo": (_fifo, "fifo"),
    "bad_version": (_patch("version.edf", 0, b"1       "), "not an edf"),
    # ---- EDF: header against file size
    "truncated_half": (_cut("half.edf", lambda n: n // 2), "truncated"),
    "truncated_one_byte": (_cut("minus1.edf", lambda n: n - 1), "truncated"),
    "records_declared_more": (_patch("more.edf", 236, b"999     "), "999 data records"),
    "records_declared_fewer": (_patch("fewer.edf", 236, b"5       "), "header and data disagree"),
    "records_declared_one": (_patch("one.edf", 236, b"1       "), "header and data disagree"),
    "extra_whole_records": (_cut("extra.edf", lambda n: n + 2 * (2 * FS + 120)), "header and data disagree"),
    "records_zero": (_patch("zero.edf", 236, b"0       "), "no data records"),
    "records_text": (_patch("rtext.edf", 236, b"lots    "), "corrupt edf header"),
    "records_minus_two": (_patch("rneg.edf", 236, b"-2      "), "-2 data records"),
    "header_size_lie": (_patch("hsize.edf", 184, b"99999   "), "corrupt edf header"),
    "header_size_text": (_patch("hstext.edf", 184, b"big     "), "corrupt edf header"),
    "signals_zero": (_patch("ns0.edf", 252, b"0   "), "corrupt edf header"),
    "signals_text": (_patch("nstext.edf", 252, b"two "), "corrupt edf header"),
    "signals_more": (_patch("ns9.edf", 252, b"9   "), "corrupt edf header"),
    "duration_zero": (_patch("dur0.edf", 244, b"0       "), "duration"),
    "duration_negative": (_patch("durneg.edf", 244, b"-1      ", plus=False), "duration"),
    "duration_nan": (_patch("durnan.edf", 244, b"nan     ", plus=False), "duration"),
    "duration_text": (_patch("durtxt.edf", 244, b"one     "), "duration"),
    "spr_zero": (_patch("spr0.edf", "spr", b"0       "), "samples per data record"),
    "spr_negative": (_patch("sprneg.edf", "spr", b"-250    "), "samples per data record"),
    "spr_text": (_patch("sprtxt.edf", "spr", b"many    "), "samples per data record"),
    "digital_min_eq_max": (_patch("deq.edf", "dmin", b"32767   "), "digital minimum"),
    "digital_min_gt_max": (_patch("dgt.edf", "dmax", b"-32768  "), "digital minimum"),
    "digital_text": (_patch("dtxt.edf", "dmin", b"low     "), "digital minimum"),
    "digital_beyond_16bit": (_patch("d17.edf", "dmax", b"40000   "), "16-bit"),
    "physical_min_eq_max": (_patch("peq.edf", "pmin", b"1.02    ", plus=False), "physical minimum equals"),
    "physical_text": (_patch("ptxt.edf", "pmax", b"high    "), "physical maximum"),
    "edf_plus_d": (_patch("disc.edf", 192, b"EDF+D".ljust(44)), "discontinuous"),
    "edf_plus_timestamps_lie": (_patch("incons.edf", 244, b"2       "), "time stamps and header disagree"),
    "fs_absurd_high": (_patch("fast.edf", 244, b"0.00001 ", plus=False), "absurd sampling rate"),
    "fs_absurd_low": (_patch("slow.edf", 244, b"10000000", plus=False), "absurd sampling rate"),
    "fs_1MHz": (_one_megahertz, "absurd sampling rate"),
    "annotations_only": (_annotations_only, "no signal channels"),
    "bdf_truncated": (_cut("cut.bdf", lambda n: n - 700, bdf=True), "truncated"),
    "bdf_records_fewer": (_patch("fewer.bdf", 236, b"3       ", bdf=True), "header and data disagree"),
    "bdf_digital_beyond_24bit": (_patch("d25.bdf", "dmax", b"9000000 ", bdf=True), "24-bit"),
    # ---- WFDB: header text
    "hea_garbage": (_bytes("junk.hea", "%%% not a header\n!!\n"), "wfdb header"),
    "hea_only_comments": (_bytes("comments.hea", "# nothing here\n# at all\n"), "wfdb header is empty"),
    "wfdb_dat_missing": (_wfdb("nodat"), "nodat.dat' is missing"),
    "wfdb_fs_zero": (_wfdb("fs0", record_line="fs0 1 0 2500", dat=_i16()), "absurd sampling rate"),
    "wfdb_fs_negative": (_wfdb("fsneg", record_line="fsneg 1 -250 2500", dat=_i16()), "absurd sampling rate"),
    "wfdb_fs_huge": (_wfdb("fsbig", record_line="fsbig 1 10000000 2500", dat=_i16()), "absurd sampling rate"),
    "wfdb_fs_text": (_wfdb("fstxt", record_line="fstxt 1 fast 2500", dat=_i16()), "sampling rate"),
    "wfdb_more_signals_declared": (_wfdb("nsig2", record_line=f"nsig2 2 {FS} 2500", dat=_i16()), "2 signal(s)"),
    "wfdb_fewer_signals_declared": (_wfdb("nsig1", signal_lines=["nsig1.dat 16 200/mV 16 0 0 0 0 ECG",
                                                                  "nsig1.dat 16 200/mV 16 0 0 0 0 V"],
                                          dat=_i16() * 2), "1 signal(s) but has 2"),
    "wfdb_length_negative": (_wfdb("lenneg", record_line=f"lenneg 1 {FS} -5", dat=_i16()), "-5 samples"),
    # ---- WFDB: data file against header
    "wfdb_dat_empty": (_wfdb("datempty", dat=b""), "no samples"),
    "wfdb_dat_truncated": (_wfdb("dathalf", dat=_i16()[:2500]), "truncated"),
    "wfdb_dat_one_byte_short": (_wfdb("datshort", dat=_i16()[:-1]), "truncated"),
    "wfdb_length_declared_longer": (_wfdb("lenlong", record_line=f"lenlong 1 {FS} 5000", dat=_i16()), "truncated"),
    "wfdb_length_declared_shorter": (_wfdb("lenshort", record_line=f"lenshort 1 {FS} 1000", dat=_i16()),
                                     "header and data disagree"),
    "wfdb_212_over_16bit": (_wfdb("f212", signal_lines=["f212.dat 212 200/mV 12 0 0 0 0 ECG"], dat=_i16()),
                            "header and data disagree"),
    "wfdb_16_over_212": (_wfdb("f16", dat=_fmt212(2500)), "truncated"),
    "wfdb_unknown_format": (_wfdb("f999", signal_lines=["f999.dat 999 200/mV 16 0 0 0 0 ECG"], dat=_i16()),
                            "format"),
    "wfdb_offset_beyond_file": (_wfdb("offbig", signal_lines=["offbig.dat 16+9000 200/mV 16 0 0 0 0 ECG"],
                                      dat=_i16()), "no samples"),
    "wfdb_multi_segment_truncated": (_multi("mseg", seg2_dat_bytes=1200), "mseg_2.dat' is truncated"),
    "wfdb_multi_segment_missing": (_multi("mmiss", missing_segment=True), "mmiss"),
    # ---- real recordings from ../shared/data, damaged
    "mitdb_dat_truncated": (_shared("mitdb-wfdb/100.hea", "m100", _truncate_data(0.5)), "truncated"),
    "mitdb_declared_16bit": (_shared("mitdb-wfdb/100.hea", "m100b", _edit_header(b" 212 ", b" 16 ")), "truncated"),
    "mitdb_mixed_formats": (_shared("mitdb-wfdb/100.hea", "m100m", _edit_header(b" 212 ", b" 16 ", 1)),
                            "different formats"),
    "mitdb_length_doubled": (_shared("mitdb-wfdb/100.hea", "m100c", _edit_header(b"650000", b"1300000")),
                             "truncated"),
    "cinc_mat_truncated": (_shared("cinc2015-wfdb/v100s.hea", "v100x", _truncate_data(0.7, ".mat")), "truncated"),
    "mimic_segment_cut": (_shared("mimicdb-wfdb/03700181.hea", "mim", _truncate_data(0.9)), "truncated"),
}


# name -> (builder, warning fragment or None, a label expected among the channels)
AWKWARD_BUT_GOOD = {
    "edf_trailing_partial_record": (_cut("partial.edf", lambda n: n + 100), "trailing partial data record", "ECG"),
    "edf_unknown_records": (_patch("unknown.edf", 236, b"-1      "), "-1 (unknown) data records", "ECG"),
    "edf_latin1_label": (_patch("latin.edf", "label", "EKG \xc4bl".encode("latin-1").ljust(16)), None,
                         "EKG \u00c4bl"),
    "edf_latin1_patient": (_patch("patient.edf", 8, "M\xfcller".encode("latin-1"), plus=False), None, "ECG"),
    "edf_bad_start_date": (_patch("date.edf", 168, b"32.13.99", plus=False), None, "ECG"),
    "bdf_plain": (lambda d: _edf(d, "plain.bdf", plus=False, bdf=True), None, "ECG"),
    "wfdb_no_length": (_wfdb("nolen", record_line=f"nolen 1 {FS}", dat=_i16()), "gives no signal length", "ECG"),
    "wfdb_byte_offset": (_wfdb("off", signal_lines=["off.dat 16+24 200/mV 16 0 0 0 0 ECG"],
                               dat=b"\0" * 24 + _i16()), None, "ECG"),
    "wfdb_counter_frequency": (_wfdb("cnt", record_line=f"cnt 1 {FS}/1000 2500", dat=_i16()), None, "ECG"),
    "wfdb_crlf": (_wfdb("crlf", dat=_i16(), crlf=True), None, "ECG"),
    "wfdb_212_odd_length": (_wfdb("odd", record_line=f"odd 1 {FS} 2501",
                                  signal_lines=["odd.dat 212 200/mV 12 0 0 0 0 ECG"], dat=_fmt212(2501)), None, "ECG"),
    "wfdb_stray_trailing_byte": (_wfdb("stray", dat=_i16() + b"\0"), "trailing byte", "ECG"),
    "wfdb_two_segments": (_multi("twoseg"), None, "ECG"),
}


def _no_outputs(folder: Path, before: set[str]) -> list[str]:
    """Files that appeared in ``folder`` (temporary files included) since ``before``."""
    return sorted(set(os.listdir(folder)) - before)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_info_refuses_broken_input(case, tmp_path, run_cli):
    build, fragment = BROKEN[case]
    path = Path(build(tmp_path))
    before = set(os.listdir(tmp_path))
    code, out, err = run_cli(["info", path])
    assert code == EXIT_INPUT, (case, code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Traceback" not in out + err
    assert path.name in lines[0], lines[0]
    assert fragment.lower() in lines[0].lower(), lines[0]
    assert _no_outputs(tmp_path, before) == []


def test_corpus_size():
    """The issue asks for at least 60 generated broken cases."""
    assert len(BROKEN) >= 60


@pytest.mark.parametrize("case", sorted(AWKWARD_BUT_GOOD))
def test_info_reads_awkward_but_valid_input(case, tmp_path, run_cli):
    build, warning, label = AWKWARD_BUT_GOOD[case]
    path = Path(build(tmp_path))
    code, out, err = run_cli(["info", "--json", path])
    assert code == 0, (case, err)
    import json

    doc = json.loads(out)
    (item,) = doc["recordings"]
    assert label in [c["label"] for c in item["channels"]]
    assert all(c["n_samples"] > 0 and c["fs_hz"] > 0 for c in item["channels"])
    if warning:
        assert any(warning in w for w in item["warnings"]), item["warnings"]
        code, out, err = run_cli(["info", path])  # human mode: one warning line naming the file
        assert code == 0 and any(ln.startswith("warning:") and path.name in ln and warning in ln
                                 for ln in err.splitlines()), err
    else:
        assert item["warnings"] == []
    from resp_sep.io import read_recording

    x = read_recording(path).channel(label).read()
    assert np.isfinite(x).all() and x.std() > 0


def test_latin1_label_and_values_match_pyedflib(tmp_path):
    """The one EDF reader gives edflib's samples and annotations, also for files edflib refuses over text fields."""
    from resp_sep.io import read_recording

    src = _edf(tmp_path, "ref.edf")
    with pyedflib.EdfReader(str(src)) as f:
        want = f.readSignal(0)
        want_ann = f.readAnnotations()
    rec = read_recording(src)
    np.testing.assert_array_equal(rec.channels[0].read(), want)
    assert len(rec.annotations) == len(want_ann[0])
    latin = Path(AWKWARD_BUT_GOOD["edf_latin1_label"][0](tmp_path))
    np.testing.assert_array_equal(read_recording(latin).channel("EKG \u00c4bl").read(), want)


# ------------------------------------------------------------------------------- extract, subset

EXTRACT_CASES = ["truncated_half", "records_declared_fewer", "records_declared_more", "duration_zero",
                 "digital_min_eq_max", "physical_min_eq_max", "edf_plus_d", "wfdb_fs_negative",
                 "wfdb_dat_truncated", "wfdb_212_over_16bit", "wfdb_length_declared_shorter",
                 "wfdb_more_signals_declared", "symlink_loop", "fifo", "random_bytes", "missing"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.mark.parametrize("case", EXTRACT_CASES)
def test_extract_refuses_broken_input_and_writes_nothing(case, tmp_path, run_cli, tiny_model):
    build, fragment = BROKEN[case]
    path = Path(build(tmp_path))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run_cli(["extract", path, "--out", out_dir / "r.csv", "--rates", out_dir / "r.rates.csv",
                              "--plot", out_dir / "r.png", "--model", tiny_model])
    assert code == EXIT_INPUT, (case, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and path.name in lines[0] and fragment.lower() in lines[0].lower(), err
    assert "Traceback" not in out + err
    assert os.listdir(out_dir) == []  # no CSV, no rates, no figure, no temporary file


def _signal_edf(d: Path, name: str, x: np.ndarray, label: str = "ECG") -> Path:
    return write_edf(d / name, {label: (FS, x)})


CONTENT_CASES = {
    # readable files whose content cannot give a respiration: refused, with the reason
    "flat_channel": (lambda d: _signal_edf(d, "flat.edf", np.full(80 * FS, 0.3)), "constant"),
    "too_short": (lambda d: _signal_edf(d, "short.edf", _sine(seconds=30)), "too short"),
    "no_cardiac_channel": (lambda d: _signal_edf(d, "eeg.edf", _sine(seconds=80), label="EEG Fpz-Cz"),
                           "no ecg or ppg channel"),
    "nan_channel": (_wfdb("nans", n=80 * FS, dat=np.full(80 * FS, -32768, "<i2").tobytes()), "nan"),
}


@pytest.mark.parametrize("case", sorted(CONTENT_CASES))
def test_extract_refuses_unusable_content(case, tmp_path, run_cli, tiny_model):
    build, fragment = CONTENT_CASES[case]
    path = Path(build(tmp_path))
    before = set(os.listdir(tmp_path))
    code, out, err = run_cli(["extract", path, "--out", tmp_path / "r.csv", "--rates", tmp_path / "rates.csv",
                              "--model", tiny_model])
    assert code == EXIT_INPUT, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and path.name in lines[0] and fragment in lines[0].lower(), err
    assert _no_outputs(tmp_path, before) == []


def test_batch_of_corpus_reports_each_file_once(tmp_path, run_cli, tiny_model):
    """A folder of broken files plus one good file: exit 4, one line per bad file, only the good output."""
    src = tmp_path / "in"
    src.mkdir()
    cases = ["truncated_half", "records_declared_fewer", "wfdb_dat_truncated", "wfdb_fs_negative"]
    names = [Path(BROKEN[c][0](src)).name for c in cases]
    from resp_sep.simulate import simulate, write_simulation

    write_simulation(simulate(duration_s=90, fs=FS, seed=3), src / "good.edf")
    for f in src.glob("src_*"):
        f.unlink()
    out_dir = tmp_path / "out"
    code, _out, err = run_cli(["extract", src, "--out-dir", out_dir, "--model", tiny_model])
    assert code == 4, err
    errs = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errs) == len(cases), err
    for n in names:
        assert sum(n in ln for ln in errs) == 1
    assert sorted(os.listdir(out_dir)) == ["good.resp.csv", "respsep-summary.tsv"]


def test_single_signal_plain_edf_extracts(tmp_path, run_cli):
    """The common Holter / ECG-only export: a plain EDF holding one ECG signal (it crashed the old block reader)."""
    import pyedflib

    from resp_sep.simulate import simulate

    sim = simulate(duration_s=600, fs=256.0, seed=1)
    w = pyedflib.EdfWriter(str(tmp_path / "one.edf"), 1, file_type=pyedflib.FILETYPE_EDF)
    w.setSignalHeaders([{"label": "ECG", "dimension": "mV", "sample_frequency": 256.0,
                         "physical_max": float(sim.ecg.max()) + 0.1, "physical_min": float(sim.ecg.min()) - 0.1,
                         "digital_max": 32767, "digital_min": -32768, "prefilter": "", "transducer": ""}])
    w.writeSamples([sim.ecg])
    w.close()
    code, _out, err = run_cli(["extract", tmp_path / "one.edf", "--out", tmp_path / "one.csv",
                               "--rates", tmp_path / "r.csv"])
    assert code == 0, err
    assert (tmp_path / "one.csv").stat().st_size > 1000 and (tmp_path / "r.csv").read_text().count("\n") == 11


def test_wfdb_checksum_mismatch_is_a_warning_naming_the_signal(tmp_path, run_cli, tiny_model):
    """Bytes overwritten inside a WFDB data file (same size): the header checksum catches it."""
    from resp_sep.simulate import simulate, write_simulation

    hea = Path(write_simulation(simulate(duration_s=90, fs=FS, seed=4), tmp_path / "ck", fmt="wfdb"))
    dat = hea.with_suffix(".dat")
    raw = bytearray(dat.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 40] = b"\x7f" * 40
    dat.write_bytes(bytes(raw))
    code, _out, err = run_cli(["extract", hea, "--out", tmp_path / "r.csv", "--model", tiny_model])
    assert code == 0, err
    warn = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    # the overwritten bytes are interleaved frames: every channel read (ECG and PPG by default) is named
    assert warn and all("ck.hea" in w and "checksum" in w for w in warn), err
    assert any("'ECG'" in w for w in warn), err
