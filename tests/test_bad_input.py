"""Broken inputs: every one is refused with a one-line InputError naming the file, and exit code 3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyedflib
import pytest
from conftest import bytes_file as _file
from conftest import one_megahertz_edf as _one_megahertz
from conftest import write_edf

from resp_sep.errors import EXIT_INPUT, EXIT_PARTIAL, EXIT_USAGE, InputError
from resp_sep.io import read_recording
from resp_sep.preprocess import load_signal


def _good_edf(d: Path, name: str = "good.edf") -> Path:
    return write_edf(d / name)  # EDF+: ECG at 250 Hz (+ annotations signal), 10 one-second records


def _patched(d: Path, name: str, offset: int, value: bytes, plus: bool = True) -> Path:
    """A valid EDF(+) with ``value`` written at byte ``offset`` of its header."""
    src = write_edf(d / ("src_" + name), file_type=None if plus else pyedflib.FILETYPE_EDF)
    raw = bytearray(src.read_bytes())
    raw[offset:offset + len(value)] = value
    p = d / name
    p.write_bytes(bytes(raw))
    return p


def _wfdb(d: Path, name: str, fs: str = "250", n: int = 1000, dat: bytes | None = b"") -> Path:
    """A one-signal format-16 WFDB record; ``dat=None`` leaves the signal file out."""
    (d / f"{name}.hea").write_text(f"{name} 1 {fs} {n}\n{name}.dat 16 200/mV 16 0 0 0 0 ECG\n")
    if dat is not None:
        (d / f"{name}.dat").write_bytes(dat or np.zeros(n, "<i2").tobytes())
    return d / f"{name}.hea"


def _folder(d: Path) -> Path:
    (d / "rec.edf").mkdir()
    return d / "rec.edf"


def _truncated(d: Path) -> Path:
    raw = _good_edf(d, "whole.edf").read_bytes()
    p = d / "truncated.edf"
    p.write_bytes(raw[: len(raw) // 2])
    return p


# name -> (builder(tmp_path) -> path, fragment expected in the message)
CORPUS = {
    "missing": (lambda d: d / "absent.edf", "no such file"),
    "empty": (_file("empty.edf", b""), "empty"),
    "random_bytes": (_file("noise.edf", np.random.default_rng(1).bytes(4096)), "not an edf"),
    "short_garbage": (_file("tiny.edf", b"0       abc"), "truncated"),
    "truncated": (_truncated, "truncated"),
    "n_records_lie": (lambda d: _patched(d, "lie.edf", 236, b"999     "), "999 data records"),
    "n_records_zero": (lambda d: _patched(d, "zero.edf", 236, b"0       "), "no data records"),
    "n_records_text": (lambda d: _patched(d, "text.edf", 236, b"lots    "), "corrupt edf header"),
    "header_size_lie": (lambda d: _patched(d, "hsize.edf", 184, b"99999   "), "corrupt edf header"),
    "record_duration_zero": (lambda d: _patched(d, "dur0.edf", 244, b"0       "), "duration"),
    "edf_plus_d": (lambda d: _patched(d, "disc.edf", 192, b"EDF+D".ljust(44)), "discontinuous"),
    # plain EDF (EDF+ annotation time stamps would contradict a patched record duration):
    # 250 samples per 10-us record = 25 MHz; 250 samples per 1e7-s record = 25 uHz
    "fs_absurd_high": (lambda d: _patched(d, "fast.edf", 244, b"0.00001 ", plus=False), "absurd sampling rate"),
    "fs_absurd_low": (lambda d: _patched(d, "slow.edf", 244, b"10000000", plus=False), "absurd sampling rate"),
    "fs_1MHz": (_one_megahertz, "absurd sampling rate (1e+06 Hz)"),
    # EDF+ whose record duration contradicts its annotation time stamps
    "edf_plus_inconsistent": (lambda d: _patched(d, "incons.edf", 244, b"2       "), "time stamps and header disagree"),
    "txt": (_file("notes.txt", "ECG"), "unsupported file type"),
    "csv": (_file("ecg.csv", "t,ecg\n0,1\n"), "unsupported file type"),
    "hea_garbage": (_file("junk.hea", "%%% not a header\n!!\n"), "wfdb header"),
    "hea_empty_dat_missing": (lambda d: _wfdb(d, "nodat", dat=None), "nodat.dat' is missing"),
    "wfdb_fs_zero": (lambda d: _wfdb(d, "fs0", fs="0"), "absurd sampling rate"),
    "wfdb_fs_huge": (lambda d: _wfdb(d, "fsbig", fs="10000000"), "absurd sampling rate"),
    "folder": (_folder, "is a folder"),
}


@pytest.fixture(params=sorted(CORPUS))
def bad_file(request, tmp_path):
    build, fragment = CORPUS[request.param]
    return Path(build(tmp_path)), fragment


def test_read_recording_refuses(bad_file):
    path, fragment = bad_file
    with pytest.raises(InputError) as ei:
        rec = read_recording(path)
        for c in rec.channels:  # damage may only show when samples are read
            c.read()
    e = ei.value
    assert e.exit_code == EXIT_INPUT
    msg = str(e)
    assert "\n" not in msg
    assert path.name in msg, msg
    assert fragment.lower() in msg.lower(), msg


def test_cli_info_refuses(bad_file, run_cli):
    path, fragment = bad_file
    code, out, err = run_cli(["info", path])
    assert code == EXIT_INPUT, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err + out
    assert path.name in lines[0] and fragment.lower() in lines[0].lower()
    assert lines[0].startswith("error:")


@pytest.mark.parametrize("case", ["missing", "truncated", "random_bytes", "folder"])
def test_cli_subprocess_exit_codes(case, tmp_path, run_cli_proc):
    path = Path(CORPUS[case][0](tmp_path))
    code, _out, err = run_cli_proc(["info", path])
    assert code == EXIT_INPUT
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert path.name in err


def test_long_path_stays_one_line(tmp_path, run_cli):
    deep = tmp_path / ("very_long_folder_name_" * 6) / ("and_another_one_" * 6)
    deep.mkdir(parents=True)
    p = deep / ("recording_with_a_long_name_" * 4 + ".edf")
    p.write_bytes(b"not an edf at all" * 20)
    code, _, err = run_cli(["info", p])
    assert code == EXIT_INPUT and len(err.strip().splitlines()) == 1 and str(p) in err


# ------------------------------------------------------------------------------------ batch mode


def test_batch_good_and_bad(tmp_path, run_cli):
    good = _good_edf(tmp_path)
    bad = _truncated(tmp_path)
    code, out, err = run_cli(["info", good, bad])
    assert code == EXIT_PARTIAL
    assert "good.edf" in out and "ECG" in out  # the good file was processed
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "truncated.edf" in lines[0]

    code, out, err = run_cli(["info", "--json", good, bad])
    assert code == EXIT_PARTIAL
    doc = json.loads(out)
    assert [Path(r["file"]).name for r in doc["recordings"]] == ["good.edf"]
    assert [Path(f["file"]).name for f in doc["failed"]] == ["truncated.edf"]
    assert doc["failed"][0]["exit_code"] == EXIT_INPUT


def test_batch_all_bad(tmp_path, run_cli_proc):
    a = _truncated(tmp_path)
    b = tmp_path / "absent.edf"
    code, _out, err = run_cli_proc(["info", a, b])
    assert code == EXIT_INPUT
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "truncated.edf" in lines[0] and "absent.edf" in lines[1]


def test_empty_folder_is_reported(tmp_path, run_cli):
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.txt").write_text("x")
    code, _out, err = run_cli(["info", tmp_path / "nothing"])
    assert code == EXIT_INPUT
    assert "nothing" in err and "no recordings" in err


# --------------------------------------------------------------------------------- channel options


def test_cli_channel_absent(tmp_path, run_cli_proc):
    good = _good_edf(tmp_path)
    code, _out, err = run_cli_proc(["info", "-c", "ecg=NOPE", good])
    assert code == EXIT_INPUT
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "NOPE" in lines[0] and "good.edf" in lines[0]


@pytest.mark.parametrize("item", ["ecg", "ecg=", "lung=ECG"])
def test_cli_channel_malformed(tmp_path, run_cli, item):
    good = _good_edf(tmp_path)
    code, _out, err = run_cli(["info", "-c", item, good])
    assert code == EXIT_USAGE
    assert len(err.strip().splitlines()) == 1 and "--channel" in err


def test_load_signal_channel_absent(tmp_path):
    good = _good_edf(tmp_path)
    with pytest.raises(InputError, match="NOPE") as ei:
        load_signal(good, "ecg", {"ecg": "NOPE"})
    assert ei.value.exit_code == EXIT_INPUT and "good.edf" in str(ei.value)
    with pytest.raises(InputError, match="no ppg channel") as ei:
        load_signal(good, "ppg")
    assert "good.edf" in str(ei.value)


def test_load_signal_nan_only(tmp_path):
    # -32768 is WFDB's "no sample" value for format 16: the channel reads as all NaN
    hea = _wfdb(tmp_path, "nans", n=5000, dat=np.full(5000, -32768, "<i2").tobytes())
    assert np.all(np.isnan(read_recording(hea).channel("ECG").read()))
    with pytest.raises(InputError, match="only NaN") as ei:
        load_signal(hea, "ecg")
    assert "nans.hea" in str(ei.value) and ei.value.exit_code == EXIT_INPUT


def test_load_signal_mostly_nan(tmp_path):
    x = np.full(5000, -32768, "<i2")
    x[:1000] = (200 * np.sin(np.arange(1000) / 10)).astype("<i2")
    hea = _wfdb(tmp_path, "gappy", n=5000, dat=x.tobytes())
    with pytest.raises(InputError, match="mostly NaN"):
        load_signal(hea, "ecg")


def test_load_signal_constant(tmp_path):
    p = write_edf(tmp_path / "flat.edf", {"ECG": (250, np.full(2500, 0.4))})
    with pytest.raises(InputError, match="constant") as ei:
        load_signal(p, "ecg")
    assert "flat.edf" in str(ei.value) and ei.value.exit_code == EXIT_INPUT


def test_load_signal_rate_too_low(tmp_path):
    p = write_edf(tmp_path / "slow.edf", {"ECG": (20, np.sin(np.arange(200)))})
    with pytest.raises(InputError, match="20 Hz"):
        load_signal(p, "ecg")
