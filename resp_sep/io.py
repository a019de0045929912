"""Reading recordings: EDF, EDF+ (continuous), BDF/BDF+ and WFDB (single- and multi-segment).

One entry point, :func:`read_recording`, opens the header only; samples of a channel are read
when :meth:`Channel.read` is called, so an overnight PSG with 20+ channels costs only the channels
that are used.

Examples
--------
>>> rec = read_recording("night.edf")                     # doctest: +SKIP
>>> ecg = rec.channel("EKG").read()                       # float64, physical units  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import re
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from resp_sep.errors import InputError

EDF_SUFFIXES = {".edf", ".bdf", ".rec"}
WFDB_SUFFIXES = {".hea"}
WFDB_DATA_SUFFIXES = {".dat", ".mat"}
#: annotation extensions looked for beside a WFDB record
WFDB_ANN_EXTENSIONS = ("atr", "resp", "breath", "ann", "qrs", "ecg", "apn", "arousal", "st")

#: sampling rates outside this range (Hz) are refused as absurd
MIN_FS, MAX_FS = 0.01, 100_000.0


@dataclass(frozen=True)
class Annotation:
    """One event annotation.

    Attributes
    ----------
    onset_s : float
        Onset in seconds from the recording start.
    duration_s : float
        Duration in seconds (0 for instantaneous events).
    label : str
        Free-text label (EDF+) or annotation symbol/aux note (WFDB).
    """

    onset_s: float
    duration_s: float
    label: str


class Channel:
    """One channel of a recording: its metadata, and its samples read by range on demand.

    Every format reads through this one interface: ``read(start, stop)`` gives samples
    ``start..stop-1`` in physical units (float64; NaN where the file marks a sample missing), and
    ``read()`` the whole channel. Readers never hold more than the range asked for, so a
    block-wise consumer (:mod:`resp_sep.chunks`) works in bounded memory on any input.

    Attributes
    ----------
    label : str
        Channel label as stored in the file.
    fs : float
        Sampling rate in Hz.
    unit : str
        Physical unit (e.g. ``"mV"``); empty when the file gives none.
    n_samples : int
        Number of samples.
    index : int
        Position of the channel among the recording's signal channels.
    path : str
        The recording (for messages).
    """

    def __init__(self, label: str, fs: float, unit: str, n_samples: int, index: int, source: _Source,
                 path: str = ""):
        self.label, self.fs, self.unit, self.n_samples, self.index = label, float(fs), unit, int(n_samples), index
        self.path = path
        self._source = source

    def __repr__(self) -> str:
        return (f"Channel(label={self.label!r}, fs={self.fs:g}, unit={self.unit!r}, n_samples={self.n_samples}, "
                f"index={self.index})")

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.n_samples / self.fs if self.fs > 0 else 0.0

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``start..stop-1`` in physical units (the whole channel by default).

        Parameters
        ----------
        start, stop : int
            Sample range, clipped to the channel.

        Returns
        -------
        numpy.ndarray, shape (stop - start,), float64
            NaN where the file marks a sample missing (WFDB).

        Raises
        ------
        InputError
            The file cannot be read (damaged, truncated while being read, removed).
        """
        a = max(0, int(start))
        b = self.n_samples if stop is None else min(self.n_samples, int(stop))
        if b <= a:
            if stop is None:
                raise InputError(f"channel '{self.label}' has no samples", self.path)
            return np.zeros(0)
        try:
            x = self._source.physical(a, b)
        except InputError:
            raise
        except MemoryError:
            raise
        except Exception as exc:  # a reader library error: the file is damaged
            raise InputError(f"cannot read channel '{self.label}': {_short(exc)}", self.path) from None
        return np.asarray(x, dtype=np.float64).reshape(-1)

    @property
    def digital(self) -> _Digital | None:
        """The integer samples behind the physical values, when the format stores them (EDF, BDF,
        single-segment WFDB): lets a whole-channel statistic (the exact median) be counted on
        integers in one pass. ``None`` for arrays and merged multi-segment WFDB records."""
        return self._source.digital_view()


class _Digital:
    """Integer samples of a channel and their scaling (see :attr:`Channel.digital`).

    Attributes
    ----------
    bits : int
        Sample width of the format (16 for EDF, 24 for BDF, up to 32 for WFDB).
    """

    def __init__(self, read: Callable[[int, int], np.ndarray], to_physical: Callable[[np.ndarray], np.ndarray],
                 bits: int, invalid: int | None = None, checksum: Callable[[int], None] | None = None):
        self.read, self.to_physical, self.bits, self.invalid = read, to_physical, bits, invalid
        #: ``checksum(total)``: called with the sum of all the channel's digital samples after a pass
        #: over all of them (WFDB compares it with its header's)
        self.checksum = checksum


class _Source:
    """What a format's reader provides for one channel."""

    def physical(self, a: int, b: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def digital_view(self) -> _Digital | None:
        return None


@dataclass
class Recording:
    """A recording opened lazily.

    Attributes
    ----------
    path : pathlib.Path
        The file (the ``.hea`` header for WFDB).
    format : str
        ``"edf"``, ``"edf+"``, ``"bdf"``, ``"bdf+"`` or ``"wfdb"``.
    channels : list of Channel
    start_time : datetime.datetime or None
        Recording start when the file gives one.
    warnings : list of str
        What was ignored to read the file (e.g. a trailing partial EDF data record); callers
        show them to the user.
    """

    path: Path
    format: str
    channels: list[Channel]
    start_time: _dt.datetime | None = None
    _annotation_loader: Callable[[], list[Annotation]] = field(repr=False, default=lambda: [])
    #: what the reader ignored to use the file (a trailing partial record, stray bytes): one line each
    warnings: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Channel labels in file order."""
        return [c.label for c in self.channels]

    @property
    def duration_s(self) -> float:
        """Longest channel duration in seconds."""
        return max((c.duration_s for c in self.channels), default=0.0)

    @cached_property
    def annotations(self) -> list[Annotation]:
        """EDF+ annotations or WFDB annotation files beside the record (read on first access)."""
        try:
            return self._annotation_loader()
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot read annotations: {_short(exc)}", str(self.path)) from None

    def channel(self, label: str) -> Channel:
        """Return the channel with this label (exact match first, then case/punctuation-insensitive).

        Raises
        ------
        InputError
            When no channel matches.
        """
        for c in self.channels:
            if c.label == label:
                return c
        from resp_sep.channels import normalise_label

        key = normalise_label(label)
        for c in self.channels:
            if normalise_label(c.label) == key:
                return c
        raise InputError(
            f"no channel '{label}' (channels: {', '.join(self.labels) or 'none'})", str(self.path)
        )


def _short(exc: BaseException) -> str:
    """A one-line description of a library exception."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg[:200]


def _folder_problem(p: Path) -> str:
    """Why a folder cannot be read as one recording (it may also hold none to find)."""
    wanted = EDF_SUFFIXES | WFDB_SUFFIXES
    if any(f.suffix.lower() in wanted for f in p.rglob("*")):
        return "is a folder, not a recording"
    return "is a folder with no recordings in it (no .edf, .bdf or WFDB .hea files)"


def resolve_path(path: str | os.PathLike) -> tuple[Path, str]:
    """Find the file and its kind (``"edf"`` or ``"wfdb"``) for a user-given path.

    WFDB records may be given as ``rec.hea``, ``rec`` (record name), or ``rec.dat``/``rec.mat``
    when the header sits beside it.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in EDF_SUFFIXES:
        kind = "edf"
    elif suffix in WFDB_SUFFIXES:
        kind = "wfdb"
    elif suffix in WFDB_DATA_SUFFIXES and p.with_suffix(".hea").exists():
        p, kind = p.with_suffix(".hea"), "wfdb"
    elif not p.exists() and Path(str(p) + ".hea").exists():
        p, kind = Path(str(p) + ".hea"), "wfdb"
    elif p.is_dir():
        raise InputError(_folder_problem(p), str(path))
    elif not p.exists():
        _stat(p, str(path))  # says why: missing, broken link, link loop
        raise InputError("no such file", str(path))
    else:
        raise InputError(
            f"unsupported file type '{p.suffix or '(none)'}' (expected .edf, .bdf or a WFDB .hea record)",
            str(path),
        )
    st = _stat(p, str(path))
    if stat.S_ISDIR(st.st_mode):
        raise InputError(_folder_problem(p), str(path))
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"not a regular file ({_file_kind(st.st_mode)})", str(path))
    if st.st_size == 0:
        raise InputError("file is empty (0 bytes)", str(path))
    if not os.access(p, os.R_OK):
        raise InputError("permission denied (cannot read the file)", str(path))
    return p, kind


def _stat(p: Path, shown: str) -> os.stat_result:
    """``os.stat`` with the reason a user can act on: missing, broken link, link loop, no permission."""
    try:
        return os.stat(p)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError("symbolic link loop (the link points back to itself)", shown) from None
        if e.errno == errno.ENOENT and os.path.islink(p):
            raise InputError(f"broken symbolic link (its target '{os.readlink(p)}' does not exist)", shown) from None
        if e.errno == errno.ENOENT:
            raise InputError("no such file", shown) from None
        if e.errno == errno.EACCES:
            raise InputError("permission denied", shown) from None
        raise InputError(f"cannot access: {e.strerror or e}", shown) from None


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO/named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a file"


def read_recording(path: str | os.PathLike) -> Recording:
    """Open a recording and read its header (samples are read lazily, channel by channel).

    Parameters
    ----------
    path : str or path-like
        An ``.edf``/``.bdf`` file, or a WFDB record (``.hea`` path, or the record path without
        extension).

    Returns
    -------
    Recording

    Raises
    ------
    InputError
        Missing, empty, truncated or corrupt file; unsupported type; EDF+D (discontinuous)
        recordings; absurd sampling rates.
    """
    p, kind = resolve_path(path)
    rec = _read_edf_header(p) if kind == "edf" else _read_wfdb_header(p)
    if not rec.channels:
        raise InputError("recording has no signal channels", str(p))
    for c in rec.channels:
        if not (MIN_FS <= c.fs <= MAX_FS) or not np.isfinite(c.fs):
            raise InputError(f"channel '{c.label}' has an absurd sampling rate ({c.fs:g} Hz)", str(p))
    return rec


# ------------------------------------------------------------------------------------------ arrays


class _ArraySource(_Source):
    def __init__(self, x: np.ndarray):
        self.x = x

    def physical(self, a: int, b: int) -> np.ndarray:
        return self.x[a:b]


def recording_from_arrays(signals: dict, *, name: str = "<arrays>", units: dict | None = None,
                          start_time: _dt.datetime | None = None) -> Recording:
    """A recording held in memory: the same :class:`Recording` the file readers give, for the Python API.

    Parameters
    ----------
    signals : dict
        ``label -> (samples, fs)``: a 1-D array (any real dtype; NaN marks missing samples) and its
        sampling rate (Hz). Labels decide the roles as for files (``"ECG"``, ``"PPG"``, ...).
    name : str
        Shown in messages where a file name would be.
    units : dict, optional
        ``label -> unit`` (default: none).
    start_time : datetime, optional

    Raises
    ------
    InputError
        No signals, a signal that is not 1-D or is empty, an absurd sampling rate.
    """
    units = units or {}
    channels = []
    for i, (label, spec) in enumerate(signals.items()):
        try:
            x, fs = spec
        except (TypeError, ValueError):
            raise InputError(f"signal '{label}' must be given as (samples, fs)", name) from None
        try:
            x = np.array(x, dtype=np.float64)  # a copy: the caller may change theirs afterwards
        except (TypeError, ValueError):
            raise InputError(f"signal '{label}' is not an array of numbers", name) from None
        if x.ndim != 1 or x.size == 0:
            raise InputError(f"signal '{label}' must be a non-empty 1-D array (shape {x.shape})", name)
        try:
            fs = float(fs)
        except (TypeError, ValueError):
            raise InputError(f"signal '{label}': sampling rate {fs!r} is not a number", name) from None
        if not (np.isfinite(fs) and MIN_FS <= fs <= MAX_FS):
            raise InputError(f"signal '{label}' has an absurd sampling rate ({fs:g} Hz)", name)
        x.setflags(write=False)
        channels.append(Channel(str(label), fs, str(units.get(label, "")), x.size, i, _ArraySource(x), name))
    if not channels:
        raise InputError("no signals given", name)
    return Recording(path=Path(name), format="arrays", channels=channels, start_time=start_time)


# --------------------------------------------------------------------------------------------- EDF

#: bytes of data records read at once (a whole-channel read of a 24-h PSG never holds the file)
READ_CHUNK_BYTES = 8 << 20


class _EdfFile:
    """The data records of a checked EDF/BDF file, read by record ranges.

    Reads use ``os.pread`` on a descriptor opened per call: no shared file position (the ECG and
    PPG are read from two threads), no memory map (mapped pages would count in the process's
    resident memory and a map cannot be closed while numpy views of it live), nothing left open
    between calls (a batch of thousands of nights opens no descriptor it does not close).
    """

    def __init__(self, hdr):
        self.hdr = hdr
        self.bps = hdr.bytes_per_sample
        self.record_bytes = hdr.record_samples * self.bps

    def records(self, r0: int, r1: int) -> np.ndarray:
        """Raw bytes of data records ``r0..r1-1``, shape (r1 - r0, record_bytes), uint8."""
        h = self.hdr
        want = (r1 - r0) * self.record_bytes
        buf = bytearray(want)
        try:
            fd = os.open(h.path, os.O_RDONLY)
        except OSError as e:
            raise InputError(f"cannot open the file: {e.strerror or e}", str(h.path)) from None
        try:
            view, got, off = memoryview(buf), 0, h.header_bytes + r0 * self.record_bytes
            while got < want:
                k = os.preadv(fd, [view[got:]], off + got)
                if k <= 0:
                    raise InputError(f"file ended at byte {off + got} while reading data record {r0 + got // self.record_bytes + 1} "
                                     f"of {h.n_records}: it was truncated or replaced while being read", str(h.path))
                got += k
        except OSError as e:
            raise InputError(f"cannot read the file: {e.strerror or e}", str(h.path)) from None
        finally:
            os.close(fd)
        return np.frombuffer(buf, dtype=np.uint8).reshape(r1 - r0, self.record_bytes)

    def column(self, sig, r0: int, r1: int) -> np.ndarray:
        """Digital samples of one signal in records ``r0..r1-1`` (int32), read in bounded chunks."""
        bps, spr = self.bps, sig.spr
        out = np.empty((r1 - r0) * spr, dtype=np.int32)
        step = max(1, READ_CHUNK_BYTES // self.record_bytes)
        for c0 in range(r0, r1, step):
            c1 = min(r1, c0 + step)
            raw = self.records(c0, c1)[:, sig.offset * bps:(sig.offset + spr) * bps]
            dst = out[(c0 - r0) * spr:(c1 - r0) * spr]
            if bps == 2:
                dst[:] = np.ascontiguousarray(raw).view("<i2").reshape(-1)
            else:
                b = raw.reshape(-1, 3).astype(np.int32)
                v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
                dst[:] = np.where(v >= 1 << 23, v - (1 << 24), v)
        return out

    def annotation_bytes(self) -> list[bytes]:
        """The annotation signals' bytes of every data record (EDF+/BDF+), record by record."""
        h = self.hdr
        parts = [s for s in h.signals if s.is_annotation]
        if not parts:
            return []
        out: list[bytes] = []
        step = max(1, READ_CHUNK_BYTES // self.record_bytes)
        for c0 in range(0, h.n_records, step):
            recs = self.records(c0, min(h.n_records, c0 + step))
            cols = np.concatenate([recs[:, s.offset * self.bps:(s.offset + s.spr) * self.bps] for s in parts], axis=1)
            out.extend(bytes(r) for r in cols)
        return out


class _EdfSource(_Source):
    """One EDF/BDF signal. Physical values by edflib's formula ``bitvalue * (offset + digital)``
    (the one formula of every reading; pyedflib's values to the last bit where the header's numbers
    parse to the same doubles)."""

    def __init__(self, data: _EdfFile, sig):
        self.data, self.sig = data, sig
        self.bitvalue = (sig.pmax - sig.pmin) / (sig.dmax - sig.dmin)
        self.offset = sig.pmax / self.bitvalue - sig.dmax

    def digital(self, a: int, b: int) -> np.ndarray:
        spr = self.sig.spr
        r0, r1 = a // spr, -(-b // spr)
        d = self.data.column(self.sig, r0, r1)
        return d[a - r0 * spr:b - r0 * spr]

    def to_physical(self, d: np.ndarray) -> np.ndarray:
        return self.bitvalue * (self.offset + np.asarray(d, dtype=np.float64))

    def physical(self, a: int, b: int) -> np.ndarray:
        return self.to_physical(self.digital(a, b))

    def digital_view(self) -> _Digital:
        return _Digital(self.digital, self.to_physical, 8 * self.data.bps)


def _read_edf_header(p: Path) -> Recording:
    from resp_sep.integrity import check_edf

    hdr = check_edf(p)  # the header against the file size: refuses lies, notes what it ignores
    if hdr.discontinuous:
        raise InputError(
            "EDF+D (discontinuous) recordings are not supported: the gaps would corrupt the timing; "
            "convert it to EDF+C (continuous) first",
            str(p),
        )
    fmt = ("bdf" if hdr.bdf else "edf") + ("+" if hdr.plus else "")
    data = _EdfFile(hdr)
    tals = _EdfAnnotations(data) if hdr.plus else None
    if tals is not None:
        tals.check_timekeeping()  # EDF+C: every record's time stamp where the header puts it
    # the record duration as edflib keeps it (an integer number of 100 ns), so that rates are
    # pyedflib's to the last bit
    record_s = round(hdr.record_s * 10_000_000) / 10_000_000 or hdr.record_s
    channels = []
    for s in hdr.signals:
        if s.is_annotation:
            continue
        channels.append(Channel(s.label, s.spr / record_s, s.unit, s.spr * hdr.n_records, len(channels),
                                _EdfSource(data, s), str(p)))
    return Recording(
        path=p, format=fmt, channels=channels, start_time=hdr.start,
        _annotation_loader=(tals.annotations if tals is not None else (lambda: [])),
        warnings=list(hdr.warnings),
    )


class _EdfAnnotations:
    """EDF+/BDF+ time-stamped annotation lists (TALs), parsed once into what is kept: each data
    record's time stamp (one float per record) and the annotations (onset, duration, text)."""

    TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14(.*?)\x14\x00", re.DOTALL)

    def __init__(self, data: _EdfFile):
        self.data = data
        self._parsed: tuple[np.ndarray, list] | None = None

    def _parse(self) -> tuple[np.ndarray, list]:
        """``(stamps, notes)``: each record's first TAL onset (NaN when it has none) and every
        annotation that is not a time stamp, as ``(onset, duration, text)`` with onsets as written."""
        if self._parsed is None:
            raws = self.data.annotation_bytes()
            stamps = np.full(len(raws), np.nan)
            notes = []
            for k, raw in enumerate(raws):
                for j, m in enumerate(self.TAL.finditer(raw)):
                    onset = float(m.group(1))
                    if j == 0:
                        stamps[k] = onset
                    texts = m.group(3).split(b"\x14")
                    for t in (texts[1:] if j == 0 else texts):
                        t = t.decode("utf-8", errors="replace").strip()
                        if t:
                            notes.append((onset, float(m.group(2) or 0.0), t))
            self._parsed = (stamps, notes)
        return self._parsed

    def check_timekeeping(self) -> None:
        """EDF+C: the first annotation of data record k is its start time, t0 + k x record duration."""
        h = self.data.hdr
        if not any(s.is_annotation for s in h.signals):
            raise InputError("EDF+ file without an annotation signal (time-keeping is missing)", str(h.path))
        stamps, _ = self._parse()
        if not stamps.size or np.isnan(stamps[0]):
            raise InputError("EDF+ data record 1 has no time stamp", str(h.path))
        t0 = stamps[0]
        want = t0 + np.arange(stamps.size) * h.record_s
        bad = ~(np.abs(stamps - want) <= 1e-3 + 1e-9 * np.abs(want))  # NaN (no stamp) is bad too
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            got = "none" if np.isnan(stamps[k]) else f"{stamps[k]:g} s"
            raise InputError(f"EDF+ time stamp of data record {k + 1} is {got}, expected {want[k]:g} s "
                             f"(record duration {h.record_s:g} s): time stamps and header disagree", str(h.path))

    def annotations(self) -> list[Annotation]:
        """Annotations (onset s from the recording start, duration s, text), time-keeping entries left out."""
        stamps, notes = self._parse()
        t0 = stamps[0] if stamps.size and np.isfinite(stamps[0]) else 0.0
        return [Annotation(onset - t0, dur if dur > 0 else 0.0, text) for onset, dur, text in notes]


# -------------------------------------------------------------------------------------------- WFDB


def _read_wfdb_header(p: Path) -> Recording:
    import wfdb

    from resp_sep.integrity import check_wfdb_data, check_wfdb_text

    record = str(p.with_suffix(""))
    check_wfdb_text(p)  # what wfdb lets pass: a negative rate, missing or extra signal lines
    try:
        hdr = wfdb.rdheader(record, rd_segments=True)
    except Exception as exc:
        raise InputError(f"cannot read WFDB header: {_short(exc)}", str(p)) from None

    multi = isinstance(hdr, wfdb.MultiRecord)
    fs = float(hdr.fs or 0)
    if fs <= 0:
        raise InputError(f"WFDB header gives an absurd sampling rate ({hdr.fs})", str(p))
    total_len = int(hdr.sig_len or 0)
    if multi:
        segs = [s for s in (hdr.segments or []) if s is not None]
        # The layout segment (length 0) of a variable-layout record lists every signal; fixed-layout
        # records repeat the same signals in each segment.
        layout = next((s for s in segs if (s.sig_len or 0) == 0 and s.sig_name), None)
        ref = layout or next((s for s in segs if s.sig_name), None)
        if ref is None:
            raise InputError("multi-segment WFDB record lists no signals", str(p))
        names, units, spf = ref.sig_name, ref.units, ref.samps_per_frame
        if total_len <= 0:
            total_len = sum(int(n or 0) for n in hdr.seg_len)
    else:
        names, units, spf = hdr.sig_name or [], hdr.units or [], hdr.samps_per_frame or []
    # every signal file against the size its header implies (segment by segment)
    warnings: list[str] = []
    for seg_hdr, seg_hea in ([(s, p.parent / f"{s.record_name}.hea") for s in segs if (s.sig_len or 0) > 0]
                             if multi else [(hdr, p)]):
        try:
            if seg_hea != p:
                check_wfdb_text(seg_hea)
            for dat in {fn for fn in (getattr(seg_hdr, "file_name", None) or []) if fn}:
                if not (p.parent / dat).exists():
                    raise InputError(f"WFDB signal file '{dat}' is missing", str(seg_hea))
            seg_warnings, inferred = check_wfdb_data(seg_hea, seg_hdr)
        except InputError as e:
            if seg_hea == p:
                raise
            raise InputError(f"segment {seg_hea.name}: {e.problem}", str(p)) from None
        warnings += seg_warnings
        if not multi and total_len <= 0 and inferred:  # no length in the header: the file says it
            total_len = inferred
    if total_len <= 0:
        raise InputError("WFDB header declares no samples", str(p))
    # wfdb reads sample ranges only when the header gives the length
    ranged = multi or bool(hdr.sig_len)
    if not ranged:
        warnings.append("the header gives no signal length: channels are read whole, not block by block "
                        "(memory grows with the recording)")
    channels = []
    for i, name in enumerate(names):
        k = int(spf[i] or 1) if i < len(spf) else 1
        src = _WfdbSource(record, str(name), multi, total_len, k, str(p), warnings,
                          None if multi else _wfdb_meta(hdr, i, total_len), ranged)
        channels.append(Channel(str(name).strip(), fs * k, str(units[i] or "") if i < len(units) else "",
                                total_len * k, i, src, str(p)))
    start = getattr(hdr, "base_datetime", None)
    if start is None and getattr(hdr, "base_time", None) is not None and getattr(hdr, "base_date", None):
        start = _dt.datetime.combine(hdr.base_date, hdr.base_time)
    return Recording(
        path=p, format="wfdb", channels=channels, start_time=start,
        _annotation_loader=lambda: _wfdb_annotations(record, fs), warnings=warnings,
    )


def _wfdb_meta(hdr, i: int, n_frames: int) -> dict:
    """Digital-to-physical scaling and checksum of signal ``i`` of a single-segment header."""
    def at(name, default=None):
        v = getattr(hdr, name, None) or []
        return v[i] if i < len(v) else default

    fmt = str(at("fmt", "16"))
    return {"gain": float(at("adc_gain", 200.0) or 200.0), "baseline": int(at("baseline", 0) or 0),
            "checksum": at("checksum"), "skew": at("skew"), "fmt": fmt, "n_frames": n_frames}


#: sample width (bits) of the WFDB storage formats, for counting digital values (the difference
#: format 8 accumulates: any 32-bit value)
_WFDB_BITS = {"8": 32, "80": 8, "508": 8, "310": 10, "311": 10, "212": 12, "16": 16, "61": 16, "160": 16, "516": 16,
              "24": 24, "524": 24, "32": 32}


class _WfdbSource(_Source):
    """One WFDB signal, read by frame ranges through wfdb (``rdrecord(sampfrom, sampto)``).

    Single-segment records are read as digital samples and scaled by wfdb (``dac``), as whole
    reads always were; multi-segment records as wfdb merges them (``m2s``, physical, NaN where a
    segment lacks the signal). ``smooth_frames=False`` keeps each signal at its own rate (a 500-Hz
    ECG stored beside 125-Hz signals has 4 samples per frame). The checksum is compared with the
    header's when the whole signal is read (a warning, not a refusal: converters write wrong ones).
    """

    def __init__(self, record: str, name: str, multi: bool, n_frames: int, spf: int, path: str,
                 warnings: list[str], meta: dict | None, ranged: bool = True):
        self.record, self.name, self.multi, self.n_frames, self.spf = record, name, multi, n_frames, spf
        self.path, self.warnings, self.meta, self.ranged = path, warnings, meta, ranged
        self._whole = None

    def _rec(self, f0: int, f1: int, physical: bool):
        import wfdb

        if not self.ranged:  # no length in the header: wfdb reads only the whole signal (kept once read)
            if self._whole is None:
                self._whole = wfdb.rdrecord(self.record, channel_names=[self.name], physical=physical,
                                            m2s=self.multi, smooth_frames=False)
            rec = self._whole
            if f0 == 0 and f1 == self.n_frames:
                return rec
            import copy

            part = copy.copy(rec)
            part.e_d_signal = [s[f0 * self.spf:f1 * self.spf] for s in rec.e_d_signal] if rec.e_d_signal else None
            return part
        return wfdb.rdrecord(self.record, sampfrom=f0, sampto=f1, channel_names=[self.name], physical=physical,
                             m2s=self.multi, smooth_frames=False)

    def _frames(self, a: int, b: int) -> tuple[int, int, int]:
        k = self.spf
        f0, f1 = a // k, min(self.n_frames, -(-b // k))
        return f0, f1, a - f0 * k

    def physical(self, a: int, b: int) -> np.ndarray:
        f0, f1, skip = self._frames(a, b)
        if self.multi:
            rec = self._rec(f0, f1, physical=True)
            if not rec.e_p_signal:
                raise InputError(f"channel '{self.name}' not found in any segment", self.path)
            return np.asarray(rec.e_p_signal[0], dtype=np.float64)[skip:skip + b - a]
        rec = self._rec(f0, f1, physical=False)
        if not rec.e_d_signal:
            raise InputError(f"channel '{self.name}' not found", self.path)
        if f0 == 0 and f1 == self.n_frames:  # the whole signal: its checksum can be compared
            note = _checksum_problem(rec, self.name)
            if note and note not in self.warnings:
                self.warnings.append(note)
        return np.asarray(rec.dac(expanded=True, return_res=64)[0], dtype=np.float64)[skip:skip + b - a]

    def digital(self, a: int, b: int) -> np.ndarray:
        f0, f1, skip = self._frames(a, b)
        rec = self._rec(f0, f1, physical=False)
        if not rec.e_d_signal:
            raise InputError(f"channel '{self.name}' not found", self.path)
        return np.asarray(rec.e_d_signal[0], dtype=np.int64)[skip:skip + b - a]

    def to_physical(self, d: np.ndarray) -> np.ndarray:
        # wfdb's dac (expanded, 64-bit): (digital - baseline) / gain, NaN for the missing-sample value
        m = self.meta
        p = (np.asarray(d, dtype=np.float64) - m["baseline"]) / m["gain"]
        inv = self._invalid()
        if inv is not None:
            p = np.where(np.asarray(d) == inv, np.nan, p)
        return p

    def _invalid(self) -> int | None:
        from wfdb.io._signal import INVALID_SAMPLE_VALUE  # wfdb's own table of missing-sample values

        return INVALID_SAMPLE_VALUE.get(self.meta["fmt"])

    def digital_view(self) -> _Digital | None:
        if self.multi or self.meta is None or self.meta["fmt"] not in _WFDB_BITS:
            return None
        return _Digital(self.digital, self.to_physical, _WFDB_BITS[self.meta["fmt"]], self._invalid(),
                        self._check_sum)

    def _check_sum(self, total: int) -> None:
        """A warning when the samples' 16-bit sum differs from the header's checksum (see _checksum_problem)."""
        want, skew = self.meta.get("checksum"), self.meta.get("skew")
        if want is None or skew:
            return
        got = int(total) % 65536
        if (got - int(want)) % 65536 == 0:
            return
        got_signed = got - 65536 if got > 32767 else got
        note = (f"signal '{self.name}': its samples sum to checksum {got_signed}, the header says {want}: "
                "the data file may be damaged or belong to another record")
        if note not in self.warnings:
            self.warnings.append(note)


def _checksum_problem(rec, name: str) -> str | None:
    """A warning when a signal's samples do not sum to the header's checksum (16-bit), else None.

    The checksum catches damage a size check cannot (overwritten bytes, a data file from another
    record). Signals with skew are not checked (their samples are shifted on reading); a
    mismatch is a warning, not a refusal, because some converters write no or wrong checksums.
    """
    want = (getattr(rec, "checksum", None) or [None])[0]
    skew = (getattr(rec, "skew", None) or [None])[0]
    if want is None or skew:
        return None
    got = int(np.sum(rec.e_d_signal[0], dtype=np.int64)) % 65536
    if (got - int(want)) % 65536 == 0:
        return None
    got_signed = got - 65536 if got > 32767 else got
    return (f"signal '{name}': its samples sum to checksum {got_signed}, the header says {want}: "
            "the data file may be damaged or belong to another record")


def _wfdb_annotations(record: str, fs: float) -> list[Annotation]:
    import wfdb

    out: list[Annotation] = []
    for ext in WFDB_ANN_EXTENSIONS:
        if not Path(f"{record}.{ext}").exists():
            continue
        ann = wfdb.rdann(record, ext)
        afs = float(ann.fs or fs)
        notes = ann.aux_note or [""] * len(ann.sample)
        for s, sym, note in zip(ann.sample, ann.symbol, notes):
            note = (note or "").replace("\x00", "").strip()
            label = f"{ext}:{sym}" + (f" {note}" if note else "")
            out.append(Annotation(float(s) / afs, 0.0, label))
    out.sort(key=lambda a: a.onset_s)
    return out


# ------------------------------------------------------------------------------------ finding files


def _wfdb_segment_names(hea: Path) -> set[str]:
    """Record names of the segments listed by a multi-segment master header (empty otherwise)."""
    try:
        lines = [ln.strip() for ln in hea.read_text(errors="replace").splitlines()]
    except OSError:
        return set()
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines or "/" not in lines[0].split()[0]:
        return set()
    return {ln.split()[0] for ln in lines[1:] if ln.split()}


def find_recordings(inputs: list[str | os.PathLike], recursive: bool = True) -> list[str]:
    """Expand files, folders and glob patterns into a sorted list of recordings.

    Folders yield their ``.edf``/``.bdf`` files and WFDB ``.hea`` records (segments of a
    multi-segment record are not listed on their own). Paths that match nothing are kept as they
    are, so that the caller reports them as missing files rather than dropping them silently.

    Parameters
    ----------
    inputs : list of str or path-like
    recursive : bool
        Search folders recursively.

    Returns
    -------
    list of str
        Unique paths, folder contents sorted, in the order the inputs were given.
    """
    import glob

    out: list[str] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = str(p.resolve()) if p.exists() else str(p)
        if key not in seen:
            seen.add(key)
            out.append(str(p))

    for item in inputs:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in p.glob(pattern) if f.is_file())
            heas = [f for f in files if f.suffix.lower() == ".hea"]
            segs = set().union(*(_wfdb_segment_names(h) for h in heas)) if heas else set()
            found = [f for f in files if f.suffix.lower() in EDF_SUFFIXES
                     or (f.suffix.lower() == ".hea" and f.stem not in segs and not f.stem.endswith("_layout"))]
            for f in found:
                add(f)
            if not found:  # keep it, so that the caller reports it instead of silently doing nothing
                add(p)
        elif any(ch in item for ch in "*?[") and not p.exists():
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                add(p)
            # segments of a multi-segment record matched by the pattern belong to their master record
            folders = {Path(m).parent for m in matches if m.lower().endswith(".hea")}
            segs = set().union(*(_wfdb_segment_names(h) for d in folders for h in d.glob("*.hea")))
            for m in matches:
                mp = Path(m)
                if mp.suffix.lower() in WFDB_DATA_SUFFIXES and mp.with_suffix(".hea").exists():
                    mp = mp.with_suffix(".hea")
                if mp.suffix.lower() == ".hea" and (mp.stem in segs or mp.stem.endswith("_layout")):
                    continue
                add(mp)
        else:
            add(p)
    return out
