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


@dataclass
class Channel:
    """Metadata of one channel; samples are read on demand.

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
        Position of the channel in the file.
    """

    label: str
    fs: float
    unit: str
    n_samples: int
    index: int
    _loader: Callable[[], np.ndarray] = field(repr=False, default=None)
    path: str = field(repr=False, default="")
    _block_opener: Callable[[], ChannelBlocks] | None = field(repr=False, default=None)

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.n_samples / self.fs if self.fs > 0 else 0.0

    def read(self) -> np.ndarray:
        """Read the samples in physical units.

        Returns
        -------
        numpy.ndarray, shape (n_samples,), float64
        """
        try:
            x = np.asarray(self._loader(), dtype=np.float64).reshape(-1)
        except InputError:
            raise
        except Exception as exc:  # a reader library error: the file is damaged
            raise InputError(f"cannot read channel '{self.label}': {_short(exc)}", self.path) from None
        if x.size == 0:
            raise InputError(f"channel '{self.label}' has no samples", self.path)
        return x

    def blocks(self) -> ChannelBlocks | None:
        """A reader of sample ranges, for bounded-memory processing (``None``: whole reads only).

        EDF/BDF channels can be read range by range (``with ch.blocks() as rd: rd(a, b)`` gives
        samples ``a..b-1`` in physical units, float64, the same values as :meth:`read`); WFDB
        channels are read whole.
        """
        return None if self._block_opener is None else self._block_opener()


class ChannelBlocks:
    """Reads sample ranges of one channel from an open file (a context manager)."""

    def __init__(self, read: Callable[[int, int], np.ndarray], close: Callable[[], None], label: str, path: str):
        self._read, self._close, self.label, self.path = read, close, label, path

    def __call__(self, a: int, b: int) -> np.ndarray:
        try:
            return np.asarray(self._read(int(a), int(b - a)), dtype=np.float64).reshape(-1)
        except Exception as exc:  # a reader library error: the file is damaged
            raise InputError(f"cannot read channel '{self.label}': {_short(exc)}", self.path) from None

    def close(self) -> None:
        self._close()

    def __enter__(self) -> ChannelBlocks:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1 or x.size == 0:
            raise InputError(f"signal '{label}' must be a non-empty 1-D array (shape {x.shape})", name)
        try:
            fs = float(fs)
        except (TypeError, ValueError):
            raise InputError(f"signal '{label}': sampling rate {fs!r} is not a number", name) from None
        if not (np.isfinite(fs) and MIN_FS <= fs <= MAX_FS):
            raise InputError(f"signal '{label}' has an absurd sampling rate ({fs:g} Hz)", name)
        x.setflags(write=False)  # the caller's samples are read, never changed
        channels.append(Channel(label=str(label), fs=fs, unit=str(units.get(label, "")), n_samples=int(x.size),
                                index=i, _loader=(lambda x=x: x), path=name,
                                _block_opener=(lambda x=x, lab=str(label): ChannelBlocks(
                                    lambda a, n: x[a:a + n], lambda: None, lab, name))))
    if not channels:
        raise InputError("no signals given", name)
    return Recording(path=Path(name), format="arrays", channels=channels, start_time=start_time)


# --------------------------------------------------------------------------------------------- EDF


def _read_edf_header(p: Path) -> Recording:
    import pyedflib

    from resp_sep.integrity import EdfRaw, check_edf, raw_reader_can_take

    hdr = check_edf(p)  # the header against the file size: refuses lies, notes what it ignores
    if hdr.discontinuous:
        raise InputError(
            "EDF+D (discontinuous) recordings are not supported: the gaps would corrupt the timing; "
            "convert it to EDF+C (continuous) first",
            str(p),
        )
    fmt = ("bdf" if hdr.bdf else "edf") + ("+" if hdr.plus else "")
    try:
        f = pyedflib.EdfReader(str(p))
    except Exception as exc:
        # pyedflib's message starts with the path, which the InputError already gives
        msg = _short(exc).replace(f"{p}: ", "")
        if not raw_reader_can_take(hdr, msg):
            raise InputError(f"cannot open EDF/BDF file: {msg}", str(p)) from None
        # edflib refuses the file for its text fields only (e.g. a Latin-1 label): read it ourselves
        return _edf_raw_recording(p, fmt, EdfRaw(hdr))
    try:
        labels = f.getSignalLabels()
        rates = f.getSampleFrequencies()
        n = f.getNSamples()
        try:
            start = f.getStartdatetime()
        except Exception:  # a malformed date is no reason to refuse the signals
            start = None
        channels = []
        for i, label in enumerate(labels):
            channels.append(
                Channel(
                    label=label.strip(),
                    fs=float(rates[i]),
                    unit=f.getPhysicalDimension(i).strip(),
                    n_samples=int(n[i]),
                    index=i,
                    _loader=_edf_loader(p, i),
                    path=str(p),
                    _block_opener=_edf_block_opener(p, i, label.strip()),
                )
            )
    finally:
        f.close()
    return Recording(
        path=p, format=fmt, channels=channels, start_time=start, _annotation_loader=lambda: _edf_annotations(p),
        warnings=list(hdr.warnings),
    )


def _edf_raw_recording(p: Path, fmt: str, raw) -> Recording:
    """A recording read by :class:`resp_sep.integrity.EdfRaw` (files edflib refuses for cosmetic reasons)."""
    hdr = raw.hdr
    channels = []
    for i, s in enumerate(hdr.signals):
        if s.is_annotation:
            continue
        channels.append(Channel(label=s.label, fs=s.spr / hdr.record_s, unit=s.unit, n_samples=s.spr * hdr.n_records,
                                index=len(channels), _loader=(lambda i=i: raw.physical(i)), path=str(p)))
    return Recording(
        path=p, format=fmt, channels=channels, start_time=hdr.start,
        _annotation_loader=lambda: [Annotation(o, d, t) for o, d, t in raw.annotations()],
        warnings=list(hdr.warnings),
    )


def _edf_loader(p: Path, i: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import pyedflib

        with pyedflib.EdfReader(str(p)) as f:
            return f.readSignal(i, digital=False)

    return load


def _edf_block_opener(p: Path, i: int, label: str) -> Callable[[], ChannelBlocks]:
    def open_blocks() -> ChannelBlocks:
        import pyedflib

        try:
            f = pyedflib.EdfReader(str(p))
        except Exception as exc:
            raise InputError(f"cannot open EDF/BDF file: {_short(exc)}", str(p)) from None
        return ChannelBlocks(lambda start, n: f.readSignal(i, start=start, n=n, digital=False), f.close,
                             label, str(p))

    return open_blocks


def _edf_annotations(p: Path) -> list[Annotation]:
    import pyedflib

    with pyedflib.EdfReader(str(p)) as f:
        onsets, durations, labels = f.readAnnotations()
    return [
        Annotation(float(o), float(d) if np.isfinite(d) and d > 0 else 0.0, str(lab))
        for o, d, lab in zip(onsets, durations, labels)
    ]


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
    channels = []
    for i, name in enumerate(names):
        k = int(spf[i] or 1) if i < len(spf) else 1
        channels.append(
            Channel(
                label=str(name).strip(),
                fs=fs * k,
                unit=str(units[i] or "") if i < len(units) else "",
                n_samples=total_len * k,
                index=i,
                _loader=_wfdb_loader(record, str(name), multi, str(p), warnings),
                path=str(p),
            )
        )
    start = getattr(hdr, "base_datetime", None)
    if start is None and getattr(hdr, "base_time", None) is not None and getattr(hdr, "base_date", None):
        start = _dt.datetime.combine(hdr.base_date, hdr.base_time)
    return Recording(
        path=p, format="wfdb", channels=channels, start_time=start,
        _annotation_loader=lambda: _wfdb_annotations(record, fs), warnings=warnings,
    )


def _wfdb_loader(record: str, name: str, multi: bool, path: str,
                 warnings: list[str] | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import wfdb

        if not multi:  # digital samples first: their checksum is compared with the header's
            rec = wfdb.rdrecord(record, channel_names=[name], physical=False, smooth_frames=False)
            if not rec.e_d_signal:
                raise InputError(f"channel '{name}' not found", path)
            if warnings is not None:
                note = _checksum_problem(rec, name)
                if note and note not in warnings:
                    warnings.append(note)
            return rec.dac(expanded=True, return_res=64)[0]
        # Multi-segment records are merged by wfdb (m2s); segments lacking the signal give NaN.
        # smooth_frames=False keeps each signal at its own rate (samples per frame > 1), e.g. a
        # 500 Hz ECG stored beside 125 Hz signals.
        rec = wfdb.rdrecord(record, channel_names=[name], physical=True, m2s=multi, smooth_frames=False)
        if not rec.e_p_signal:
            raise InputError(f"channel '{name}' not found in any segment", path)
        return rec.e_p_signal[0]

    return load


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
