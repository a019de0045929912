"""Is a recording what its header says? Consistency checks before any sample is trusted.

Reader libraries believe headers: pyedflib reads half a file when the header declares half its
data records, wfdb decodes 16-bit samples as format 212 noise when the header says 212, and
takes ``-250`` Hz for 250 Hz. These checks compare each header with the file it describes and
refuse a lie with one line naming the file and the disagreement (:class:`InputError`, exit 3).
Where the recording is still usable - a trailing partial EDF data record, a few stray bytes after
the last WFDB frame, an EDF header giving "-1" (unknown) data records - it is read and a warning
says what was ignored (``Recording.warnings``).

EDF/BDF: the fixed and per-signal header fields are parsed here, once, for the one reader of their
samples (:mod:`resp_sep.io`); text fields as Latin-1, as vendor files use it for labels such as
"SpO\u2082" or "Ableitung \u00c4" (edflib refuses such files; respsep reads them: only numbers
and sizes decide whether samples can be trusted).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resp_sep.errors import InputError

EDF_VERSION, BDF_VERSION = b"0       ", b"\xffBIOSEMI"
ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")


# --------------------------------------------------------------------------------------------- EDF


@dataclass
class EdfSignal:
    """One signal of an EDF/BDF header (physical = (digital - dmin) * gain + pmin)."""

    label: str
    unit: str
    pmin: float
    pmax: float
    dmin: int
    dmax: int
    spr: int  # samples per data record
    offset: int = 0  # sample offset of this signal inside a data record

    @property
    def is_annotation(self) -> bool:
        return self.label in ANNOTATION_LABELS


@dataclass
class EdfHeader:
    """A checked EDF/BDF header; ``n_records`` is the number of whole data records to read."""

    path: Path
    bdf: bool
    plus: bool
    discontinuous: bool
    header_bytes: int
    n_records: int
    record_s: float
    signals: list[EdfSignal]
    start: _dt.datetime | None
    #: the header has bytes outside printable ASCII (edflib refuses such files; respsep reads them)
    non_ascii: bool = False
    #: the header gave -1 (unknown) data records
    unknown_records: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def bytes_per_sample(self) -> int:
        return 3 if self.bdf else 2

    @property
    def record_samples(self) -> int:
        return sum(s.spr for s in self.signals)


def _num(text: bytes, what: str, p: Path, kind=float):
    s = text.decode("latin-1").strip()
    try:
        v = kind(s) if kind is float else int(s)
    except ValueError:
        raise InputError(f"corrupt EDF header ({what} '{s}' is not a number)", str(p)) from None
    if kind is float and not math.isfinite(v):
        raise InputError(f"corrupt EDF header ({what} '{s}')", str(p))
    return v


def check_edf(p: Path) -> EdfHeader:
    """Parse and check an EDF/BDF header against the file size.

    Checks: version, header size = 256 x (signals + 1), numeric fields, data record duration
    > 0, samples per record > 0 and digital minimum < maximum for every signal, physical
    minimum != maximum, and the declared number of data records x record size against the data
    size in both directions (fewer bytes: truncated; more whole records than declared: the header
    lies). A trailing partial record is ignored with a warning.

    Raises
    ------
    InputError
        With the disagreement, naming the file.
    """
    size = p.stat().st_size
    if size < 256:
        raise InputError(f"truncated or not an EDF/BDF file ({size} bytes, header needs 256)", str(p))
    with open(p, "rb") as fh:
        head = fh.read(256)
        version = head[0:8]
        if version not in (EDF_VERSION, BDF_VERSION):
            raise InputError("not an EDF/BDF file (bad version field in header)", str(p))
        for lo, hi, what in ((184, 192, "header size"), (236, 244, "number of data records"),
                             (244, 252, "data record duration"), (252, 256, "number of signals")):
            if not head[lo:hi].strip():
                raise InputError(f"corrupt EDF header (empty {what} field)", str(p))
        try:
            header_bytes = int(head[184:192].decode("ascii").strip())
            n_records = int(head[236:244].decode("ascii").strip())
            n_signals = int(head[252:256].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise InputError("corrupt EDF header (non-numeric size fields)", str(p)) from None
        rec_dur = _num(head[244:252], "data record duration", p)
        if n_signals <= 0 or header_bytes != 256 * (n_signals + 1):
            raise InputError(
                f"corrupt EDF header ({n_signals} signals but header size {header_bytes} bytes)", str(p))
        if size < header_bytes:
            raise InputError(f"truncated file: header declares {header_bytes} bytes, file has {size}", str(p))
        sig = fh.read(256 * n_signals)
    ns = n_signals

    def field_(offset: int, width: int, i: int) -> bytes:
        a = offset * ns + width * i
        return sig[a:a + width]

    signals, pos = [], 0
    for i in range(ns):
        label = field_(0, 16, i).decode("latin-1").strip()
        unit = field_(96, 8, i).decode("latin-1").strip()
        name = f"signal {i + 1} ('{label}')"
        pmin = _num(field_(104, 8, i), f"{name} physical minimum", p)
        pmax = _num(field_(112, 8, i), f"{name} physical maximum", p)
        dmin = _num(field_(120, 8, i), f"{name} digital minimum", p, int)
        dmax = _num(field_(128, 8, i), f"{name} digital maximum", p, int)
        spr = _num(field_(216, 8, i), f"{name} samples per data record", p, int)
        if spr <= 0:
            raise InputError(f"corrupt EDF header ({name}: {spr} samples per data record)", str(p))
        if dmin >= dmax:
            raise InputError(f"corrupt EDF header ({name}: digital minimum {dmin} is not below maximum {dmax})",
                             str(p))
        lim = (-(1 << 23), (1 << 23) - 1) if version == BDF_VERSION else (-32768, 32767)
        if dmin < lim[0] or dmax > lim[1]:
            raise InputError(f"corrupt EDF header ({name}: digital range {dmin}..{dmax} exceeds "
                             f"{'24' if version == BDF_VERSION else '16'}-bit samples)", str(p))
        s = EdfSignal(label, unit, pmin, pmax, dmin, dmax, spr, pos)
        if pmin == pmax and not s.is_annotation:
            raise InputError(f"corrupt EDF header ({name}: physical minimum equals maximum, {pmin:g})", str(p))
        signals.append(s)
        pos += spr
    if not (rec_dur > 0):
        raise InputError(f"corrupt EDF header (data record duration {rec_dur:g} s)", str(p))

    bps = 3 if version == BDF_VERSION else 2
    record_bytes = pos * bps
    data_bytes = size - header_bytes
    whole, extra = divmod(data_bytes, record_bytes)
    warnings: list[str] = []
    unknown = n_records == -1
    if n_records < -1:
        raise InputError(f"corrupt EDF header ({n_records} data records)", str(p))
    if unknown:
        if whole == 0:
            raise InputError("recording has no data records (empty or truncated file)", str(p))
        warnings.append(f"header gives -1 (unknown) data records; read the {whole} whole records in the file")
        n_records = whole
    if n_records == 0 or whole == 0:
        raise InputError("recording has no data records (empty or truncated file)", str(p))
    if whole < n_records:
        raise InputError(
            f"truncated file: header declares {n_records} data records ({n_records * record_bytes} bytes), "
            f"file holds {data_bytes} bytes ({whole} whole records)", str(p))
    if whole > n_records:
        raise InputError(
            f"header declares {n_records} data records ({n_records * record_bytes} bytes of data) but the file "
            f"holds {whole} ({data_bytes} bytes): header and data disagree", str(p))
    if extra:
        warnings.append(f"ignored a trailing partial data record ({extra} bytes after the last of "
                        f"{n_records} records)")
    reserved = head[192:236].decode("latin-1").strip().upper()
    text = head[8:256] + sig
    non_ascii = any(b < 32 or b > 126 for b in text)
    return EdfHeader(path=p, bdf=version == BDF_VERSION, plus=reserved.startswith(("EDF+", "BDF+")),
                     discontinuous=reserved.startswith(("EDF+D", "BDF+D")), header_bytes=header_bytes,
                     n_records=n_records, record_s=rec_dur, signals=signals, start=_edf_start(head),
                     non_ascii=non_ascii, unknown_records=unknown, warnings=warnings)


def _edf_start(head: bytes) -> _dt.datetime | None:
    """Start date and time from the fixed header (dd.mm.yy hh.mm.ss; 1985-2084), or None."""
    try:
        d, mo, y = (int(v) for v in head[168:176].decode("ascii").split("."))
        h, mi, s = (int(v) for v in head[176:184].decode("ascii").split("."))
        return _dt.datetime(1900 + y if y >= 85 else 2000 + y, mo, d, h, mi, s)
    except (ValueError, UnicodeDecodeError):
        return None


# -------------------------------------------------------------------------------------------- WFDB

#: bytes per sample of the WFDB storage formats (212: 2 samples in 3 bytes; 310/311: 3 in 4)
WFDB_BYTES = {"8": 1, "80": 1, "16": 2, "61": 2, "160": 2, "24": 3, "32": 4, "212": 1.5, "310": 4 / 3, "311": 4 / 3}
#: compressed (FLAC) formats: their size says nothing about the number of samples
WFDB_COMPRESSED = {"508", "516", "524"}


def _header_lines(hea: Path) -> list[str]:
    try:
        text = hea.read_text(encoding="latin-1")
    except OSError as e:
        raise InputError(f"cannot read WFDB header: {e.strerror or e}", str(hea)) from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def check_wfdb_text(hea: Path) -> None:
    """Check what wfdb does not: a positive sampling rate, and as many signal (or segment) lines
    as the record line declares.

    Raises
    ------
    InputError
    """
    lines = _header_lines(hea)
    if not lines:
        raise InputError("WFDB header is empty", str(hea))
    tok = lines[0].split()
    if len(tok) < 2:
        raise InputError(f"corrupt WFDB header: record line '{lines[0][:60]}' lacks the number of signals", str(hea))
    name = tok[0]
    try:
        nsig = int(tok[1])
    except ValueError:
        raise InputError(f"corrupt WFDB header: record line: number of signals '{tok[1]}' is not a number", str(hea)) from None
    if len(tok) >= 3:
        fs_text = tok[2].split("/")[0].split("(")[0]
        try:
            fs = float(fs_text)
        except ValueError:
            raise InputError(f"corrupt WFDB header: record line: sampling rate '{tok[2]}' is not a number", str(hea)) from None
        if not (math.isfinite(fs) and fs > 0):
            raise InputError(f"WFDB header gives an absurd sampling rate ({tok[2]} Hz)", str(hea))
    if len(tok) >= 4:
        try:
            n = int(tok[3])
        except ValueError:
            raise InputError(f"corrupt WFDB header: record line: number of samples '{tok[3]}' is not a number", str(hea)) from None
        if n < 0:
            raise InputError(f"WFDB header declares {n} samples", str(hea))
    if nsig < 0:
        raise InputError(f"WFDB header declares {nsig} signals", str(hea))
    if "/" in name:  # multi-segment: record line "name/segments"
        try:
            nseg = int(name.split("/")[1])
        except ValueError:
            raise InputError(f"corrupt WFDB header: record line: segment count in '{name}' is not a number", str(hea)) from None
        if len(lines) - 1 != nseg:
            raise InputError(f"WFDB header declares {nseg} segments but lists {len(lines) - 1}", str(hea))
    elif len(lines) - 1 != nsig:
        raise InputError(f"WFDB header declares {nsig} signal(s) but has {len(lines) - 1} signal line(s)", str(hea))


def check_wfdb_data(hea: Path, hdr) -> tuple[list[str], int | None]:
    """Compare every signal file of a (single-segment) wfdb header with the size it implies.

    Expected bytes per file: byte offset + ceil(samples per signal x samples per frame of its
    signals x bytes per sample of its format). Fewer bytes: truncated (refused). More: a
    trailing partial frame is ignored with a warning; whole frames more than declared mean the
    header and the data disagree (wrong format or length) and are refused.

    Returns
    -------
    warnings : list of str
    inferred : int or None
        Samples per signal implied by the file size when the header gives none.
    """
    files = list(getattr(hdr, "file_name", None) or [])
    fmts = [str(f) for f in (getattr(hdr, "fmt", None) or [])]
    spf = list(getattr(hdr, "samps_per_frame", None) or [])
    offs = list(getattr(hdr, "byte_offset", None) or [])
    sig_len = getattr(hdr, "sig_len", None)
    warnings: list[str] = []
    inferred = None
    groups: dict[str, list[int]] = {}
    for i, fn in enumerate(files):
        if fn and fn != "~":
            groups.setdefault(fn, []).append(i)
    for fn, idx in groups.items():
        p = hea.parent / fn
        kinds = {fmts[i] if i < len(fmts) else "16" for i in idx}
        if len(kinds) > 1:
            raise InputError(f"WFDB signals of '{fn}' declare different formats ({', '.join(sorted(kinds))})", str(hea))
        fmt = kinds.pop()
        if fmt in WFDB_COMPRESSED or fmt == "0":
            continue
        if fmt not in WFDB_BYTES:
            raise InputError(f"WFDB format {fmt} of '{fn}' is not supported", str(hea))
        try:
            st = os.stat(p)
        except OSError as e:
            raise InputError(f"WFDB signal file '{fn}': {e.strerror or e}", str(hea)) from None
        offset = int(offs[idx[0]] or 0) if idx[0] < len(offs) else 0
        frame = sum(int(spf[i] or 1) if i < len(spf) else 1 for i in idx)
        frame_bytes = frame * WFDB_BYTES[fmt]
        data = st.st_size - offset
        what = f"{len(idx)} signal{'s' if len(idx) > 1 else ''} in format {fmt}"
        if data <= 0:
            raise InputError(f"WFDB signal file '{fn}' holds no samples ({st.st_size} bytes"
                             + (f", data start at byte {offset}" if offset else "") + ")", str(hea))
        if not sig_len:
            whole = int(data // frame_bytes)
            if whole == 0:
                raise InputError(f"WFDB signal file '{fn}' holds less than one sample frame", str(hea))
            inferred = whole if inferred is None else min(inferred, whole)
            if data - whole * frame_bytes >= 1:
                warnings.append(f"ignored a trailing partial sample frame of '{fn}'")
            continue
        expected = math.ceil(sig_len * frame_bytes)
        if data < expected:
            raise InputError(
                f"WFDB signal file '{fn}' is truncated: the header declares {sig_len} samples x {what} "
                f"({expected} bytes), the file holds {data}", str(hea))
        extra = data - expected
        if extra >= max(frame_bytes, 1) + (1 if fmt in ("212", "310", "311") else 0):
            raise InputError(
                f"WFDB signal file '{fn}' holds {data} bytes but the header declares {sig_len} samples x {what} "
                f"({expected} bytes): header and data disagree (wrong format or length?)", str(hea))
        if extra:
            warnings.append(f"ignored {extra} trailing byte{'s' if extra > 1 else ''} of '{fn}' after the "
                            f"{sig_len} declared samples")
    return warnings, inferred
