"""Writing outputs: EDF+, WFDB and CSV, never leaving a half-written file behind.

Every file the tool writes goes through :func:`atomic_output`: the data are written to a hidden
temporary file in the target folder and moved onto the final name only when writing succeeded, so
an interrupted run (Ctrl-C, disk full, a crash) leaves either the old file or nothing - never a
truncated file that a later step would take for a result.

Signals are passed as a list of dicts::

    {"label": "ECG", "fs": 256.0, "unit": "mV", "data": <1-D float array>}

Examples
--------
>>> write_edf("out.edf", [{"label": "Resp", "fs": 25.0, "unit": "a.u.", "data": x}])  # doctest: +SKIP
>>> write_csv("rate.csv", ["time_s", "rate_bpm"], [t, r], fmt=["%.2f", "%.1f"])       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob as _glob
import math
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from resp_sep.errors import OutputError
from resp_sep.textfmt import format_rows

#: EDF header fields: label 16 characters, physical dimension 8, numbers 8.
EDF_LABEL_LEN, EDF_UNIT_LEN, EDF_NUMBER_LEN = 16, 8, 8
#: EDF stores 16-bit samples.
DIGITAL_MIN, DIGITAL_MAX = -32768, 32767
#: the EDF data record duration must lie in this range (s), as edflib accepts it.
EDF_MIN_RECORD_S, EDF_MAX_RECORD_S = 0.001, 60.0
#: samples quantised at a time by :func:`write_edf`
QUANTISE_CHUNK = 1 << 20
#: rows formatted per numpy.savetxt call in :func:`write_csv` (bounds memory, keeps it fast).
CSV_CHUNK_ROWS = 65_536


def _reason(exc: OSError) -> str:
    """The one-line reason of an OS error, without the file name (the caller prefixes it)."""
    return exc.strerror or " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def _output_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` into :class:`~resp_sep.errors.OutputError` naming ``path`` - the output the
    user asked for, also when ``path`` is its hidden temporary (a disk-full error while writing the
    temporary is the output's error)."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        shown = _TEMP_FINAL.get(Path(path), Path(path))
        raise OutputError(f"cannot write: {_reason(exc)}", str(shown)) from exc


def _host() -> str:
    """This machine's name as it may appear in a file name (temporaries on shared cluster folders)."""
    import socket

    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname() or "host")[:40]


def _temp_name(final: Path) -> Path:
    """A hidden, unique temporary name beside ``final`` that keeps its suffix.

    ``night.edf`` -> ``.night.edf.<host>-<pid>-<random>.tmp.edf``: hidden so it is not picked up by a
    folder scan, ending in the real suffix because edflib and wfdb check the extension, and naming
    the machine and process that write it, so that a later run can tell a dead writer's leftover
    (:func:`_remove_dead_temps`) from a live one's.
    """
    token = f"{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
    return final.with_name(f".{final.name}.{token}.tmp{final.suffix}")


#: temporary files this process has created and not yet renamed or deleted: a signal handler that
#: must exit at once (a batch worker told to stop) deletes them with :func:`remove_live_temps`
_LIVE_TEMPS: set[Path] = set()
#: temporary -> the output it becomes (messages name the output)
_TEMP_FINAL: dict[Path, Path] = {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_dead_temps(final: Path) -> None:
    """Delete the temporaries a killed writer of ``final`` left behind (``kill -9``, a node that
    lost power): those of this machine whose process no longer runs. A live writer's, and another
    machine's on a shared folder, are left alone."""
    prefix = f".{final.name}.{_host()}-"
    try:
        names = [e.name for e in os.scandir(final.parent if str(final.parent) else ".") if e.name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        m = re.match(r"(\d+)-[0-9a-f]+\.tmp", name[len(prefix):])
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            for cand in (final.with_name(name), *final.parent.glob(_glob.escape(f".{name}.") + "*")):
                with contextlib.suppress(OSError):
                    cand.unlink()


def _reserve_temp(final: Path) -> Path:
    """Create (empty) and register a hidden temporary file beside ``final``."""
    with _output_errors(final):
        if final.is_dir():
            raise OutputError("cannot write: is a folder", str(final))
        _remove_dead_temps(final)
        while True:
            tmp = _temp_name(final)
            try:
                # O_EXCL: never reuse a file someone else is writing; mode 0o666 so the umask
                # applies (tempfile.mkstemp would leave a 0600 file behind after the rename).
                fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:  # pragma: no cover - 32 random bits collided
                continue
            os.close(fd)
            _LIVE_TEMPS.add(tmp)
            _TEMP_FINAL[tmp] = final
            return tmp


def _drop_temp(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()
    _LIVE_TEMPS.discard(tmp)
    _TEMP_FINAL.pop(tmp, None)


def remove_live_temps() -> None:
    """Delete every temporary output file of this process (for signal handlers about to exit)."""
    for tmp in list(_LIVE_TEMPS):
        for cand in (tmp, *tmp.parent.glob(_glob.escape(f".{tmp.name}.") + "*")):  # a writer's own temporary
            with contextlib.suppress(OSError):
                cand.unlink()
        _LIVE_TEMPS.discard(tmp)
        _TEMP_FINAL.pop(tmp, None)


def remove_stale_temps(finals: Sequence[str | os.PathLike], pids: Sequence[int]) -> None:
    """Delete the temporary files that processes ``pids`` (stopped workers) left for ``finals``."""
    host = _host()
    for final in finals:
        f = Path(final)
        for pid in pids:
            for pattern in (f".{f.name}.{host}-{pid}-", f"..{f.name}.{host}-{pid}-"):
                for cand in f.parent.glob(_glob.escape(pattern) + "*"):
                    with contextlib.suppress(OSError):
                        cand.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file under a temporary name and move it onto ``path`` only on success.

    The temporary file is created (empty) in the same folder as ``path`` - so the final
    :func:`os.replace` is an atomic rename on the same file system - with the usual permissions
    (``0o666`` minus the umask), like a file opened directly.

    Parameters
    ----------
    path : str or path-like
        The final file. An existing file is replaced only when the block succeeds.

    Yields
    ------
    pathlib.Path
        The temporary path to write to (it may be truncated or replaced by the writer).

    Raises
    ------
    OutputError
        When the temporary file cannot be created or moved, or the block raises ``OSError``
        (permission denied, disk full, missing folder).
    Exception
        Any other exception raised in the block is re-raised unchanged; in every failure case
        the temporary file is deleted and ``path`` is left untouched.

    Examples
    --------
    >>> with atomic_output("out.txt") as tmp:                           # doctest: +SKIP
    ...     tmp.write_text("done\\n")
    """
    final = Path(path)
    tmp = _reserve_temp(final)
    try:
        with _output_errors(final):
            yield tmp
            os.replace(tmp, final)
        _LIVE_TEMPS.discard(tmp)
        _TEMP_FINAL.pop(tmp, None)
    except BaseException:  # also on Ctrl-C: never leave the temporary file behind
        _drop_temp(tmp)
        raise


class OutputSet:
    """The outputs of one command, written all-or-nothing (see :func:`output_set`)."""

    def __init__(self) -> None:
        self._pending: dict[Path, Path] = {}  # final -> temporary

    def path(self, final: str | os.PathLike) -> Path:
        """A temporary path to write ``final`` to (same folder, same suffix, hidden).

        Any writer can be given it (``write_csv``, ``write_edf``, ``savefig``); it is moved onto
        ``final`` when the whole block succeeds, deleted otherwise. Asking twice for the same
        final path returns the same temporary.
        """
        final = Path(final)
        if final not in self._pending:
            self._pending[final] = _reserve_temp(final)
        return self._pending[final]

    def commit(self) -> None:
        """Move every temporary onto its final name; on a failure, undo the moves already made."""
        done: list[Path] = []
        try:
            for final, tmp in self._pending.items():
                with _output_errors(final):
                    os.replace(tmp, final)
                _LIVE_TEMPS.discard(tmp)
                _TEMP_FINAL.pop(tmp, None)
                done.append(final)
        except BaseException:
            for final in done:  # all or nothing: a result without its companions misleads
                with contextlib.suppress(OSError):
                    final.unlink()
            self.discard()
            raise
        self._pending.clear()

    def discard(self) -> None:
        """Delete every temporary not yet moved."""
        for tmp in self._pending.values():
            _drop_temp(tmp)
        self._pending.clear()


@contextlib.contextmanager
def output_set() -> Iterator[OutputSet]:
    """Write several outputs so that either all of them appear or none does.

    Inside the block, ask ``outs.path(final)`` for a temporary path per output and write to it.
    When the block succeeds every temporary is renamed onto its final name; when it raises
    (including Ctrl-C) the temporaries are deleted and no final file is touched. A command that
    writes a respiration CSV, a rates CSV and a figure therefore never leaves the CSV alone behind
    for a rerun to skip as done.

    Examples
    --------
    >>> with output_set() as outs:                                        # doctest: +SKIP
    ...     write_csv(outs.path("resp.csv"), ["time_s", "resp"], [t, y])
    ...     plot(outs.path("resp.png"))
    """
    outs = OutputSet()
    try:
        yield outs
    except BaseException:
        outs.discard()
        raise
    outs.commit()


def check_outputs(outputs: dict[str, str | os.PathLike | None], inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Check, before any work, that every output can be written.

    Parameters
    ----------
    outputs : dict
        ``{option name: path or None}``, e.g. ``{"--out": "r.csv", "--plot": None}``.
    inputs : sequence of path
        Input files that no output may replace.

    Raises
    ------
    OutputError
        A path is a folder, its folder does not exist or is not writable (exit 6).
    UsageError
        Two options name the same file, or an output would replace an input (exit 2).
    """
    from resp_sep.errors import UsageError

    seen: dict[str, str] = {}
    ins = {_key(Path(i)) for i in inputs}
    for option, path in outputs.items():
        if path is None:
            continue
        p = Path(path)
        if str(path).strip() == "" or p.name in ("", ".", ".."):
            raise UsageError(f"{option} needs a file name (got '{path}')")
        key = _key(p)
        if key in seen:
            raise UsageError(f"{option} and {seen[key]} name the same file ({path})")
        if key in ins:
            raise UsageError(f"{option} {path} would replace an input recording")
        seen[key] = option
        if p.is_dir():
            raise OutputError("cannot write: is a folder", str(path))
        _check_writable_folder(p.parent, str(path))


def _key(p: Path) -> str:
    try:
        return str(p.resolve())
    except (OSError, RuntimeError):  # a symbolic link loop: the reader reports it
        return str(p.absolute())


def _check_writable_folder(folder: Path, shown: str) -> None:
    folder = folder if str(folder) else Path(".")
    if not folder.exists():
        raise OutputError(f"cannot write: folder '{folder}' does not exist", shown)
    if not folder.is_dir():
        raise OutputError(f"cannot write: '{folder}' is not a folder", shown)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write: {_access_problem(folder)} in folder '{folder}'", shown)


def _access_problem(folder: Path) -> str:
    """Why a folder cannot be written: a read-only file system, or permission denied."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied"


def check_folder(folder: str | os.PathLike, option: str = "--out-dir") -> bool:
    """Check, before any work, that ``folder`` exists or can be created; returns whether it exists.

    Raises
    ------
    OutputError
        It is a file, or an existing ancestor is a file or not writable (exit 6).
    """
    p = Path(folder)
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise OutputError(f"{option}: {_access_problem(p)} (cannot write in the folder)", str(folder))
        return True
    if p.exists() or p.is_symlink():
        raise OutputError(f"{option}: exists and is not a folder", str(folder))
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"{option}: cannot create the folder ('{anc}' is a file)", str(folder))
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{option}: cannot create the folder ({_access_problem(anc)} in '{anc}')", str(folder))
    return False


def make_folder(folder: str | os.PathLike, option: str = "--out-dir") -> Path | None:
    """Create ``folder`` (and parents) after :func:`check_folder`.

    Returns
    -------
    Path or None
        The top-most folder created (to remove with :func:`remove_if_empty` when nothing was
        written), ``None`` when ``folder`` existed.
    """
    if check_folder(folder, option):
        return None
    top = Path(folder)
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    with _output_errors(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
    return top


def remove_if_empty(folder: str | os.PathLike, top: str | os.PathLike | None = None) -> None:
    """Remove a folder this command created (and its created parents up to ``top``) when left empty."""
    p, stop = Path(folder), Path(top) if top is not None else Path(folder)
    while True:
        try:
            p.rmdir()
        except OSError:
            return
        if p == stop or p.parent == p:
            return
        p = p.parent


# --------------------------------------------------------------------------------------------- EDF


def _check_signals(signals: Sequence[dict]) -> list[dict]:
    """Validate the signal dicts; ``data`` becomes a 1-D numeric array (no copy when it is one)."""
    if not signals:
        raise ValueError("no signals to write")
    out = []
    for i, s in enumerate(signals):
        missing = {"label", "fs", "data"} - set(s)
        if missing:
            raise ValueError(f"signal {i} lacks {', '.join(sorted(missing))}")
        data = np.asarray(s["data"]).reshape(-1)
        if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
            data = data.astype(np.float64)  # float32 stays float32: an 8-hour channel is large
        fs = float(s["fs"])
        if not (np.isfinite(fs) and fs > 0):
            raise ValueError(f"signal '{s['label']}': sampling rate must be positive, got {s['fs']}")
        if data.size == 0:
            raise ValueError(f"signal '{s['label']}' has no samples")
        out.append({"label": str(s["label"]), "fs": fs, "unit": str(s.get("unit", "") or ""), "data": data})
    return out


def edf_record_duration(rates: Sequence[float], max_denominator: int = 1000) -> float:
    """Choose an EDF data record duration (s) holding a whole number of samples of every channel.

    Integer rates give 1 s (the usual choice that readers expect). Otherwise the shortest whole
    number of seconds with ``fs * d`` integral for all rates, e.g. 2 s for 0.5 Hz or 128.5 Hz, 3 s
    for 1000/3 Hz; failing that (up to 60 s), the shortest multiple of 0.1, 0.01 or 0.001 s.

    Parameters
    ----------
    rates : sequence of float
        Sampling rates in Hz.
    max_denominator : int
        Rates are taken as fractions with at most this denominator (so 33.333333 Hz is 100/3).

    Returns
    -------
    float
        Duration in seconds, within [0.001, 60].

    Raises
    ------
    ValueError
        When no duration up to 60 s works (the rates cannot be stored in one EDF file).
    """
    fracs = [Fraction(float(r)).limit_denominator(max_denominator) for r in rates]
    if any(f <= 0 for f in fracs):
        raise ValueError("sampling rates must be positive")
    # Durations with a short decimal form, d = n / 10**k: fs_i * d = p_i * n / (q_i * 10**k) is
    # integral for every i when n is a multiple of each q_i * 10**k / gcd(p_i, q_i * 10**k).
    # Whole seconds (k = 0) first - readers and viewers expect them - then 0.1, 0.01, 0.001 s steps.
    d = None
    for k in range(4):
        n = 1
        for f in fracs:
            m = f.denominator * 10**k // math.gcd(f.numerator, f.denominator * 10**k)
            n = n * m // math.gcd(n, m)
        cand = Fraction(n, 10**k)
        if cand <= EDF_MAX_RECORD_S:
            d = cand
            break
    if d is None or len(_edf_num_str(float(d))) > EDF_NUMBER_LEN:
        raise ValueError(
            f"sampling rates {', '.join(f'{float(r):g}' for r in rates)} Hz cannot share an EDF data "
            f"record of {EDF_MIN_RECORD_S:g} to {EDF_MAX_RECORD_S:g} s"
        )
    return float(d)


def _edf_num_str(x: float) -> str:
    return f"{x:.10f}".rstrip("0").rstrip(".")


def _edf_bound(x: float, up: bool) -> float:
    """Round ``x`` outward (up for a maximum, down for a minimum) to a number of <= 8 characters.

    edflib prints the physical extremes into 8-character header fields but scales the samples with
    the unrounded values; rounding them here keeps the file's scaling exactly what was used.
    """
    for decimals in range(7, -1, -1):
        scale = 10.0**decimals
        y = (math.ceil(x * scale) if up else math.floor(x * scale)) / scale
        if len(_edf_num_str(y)) <= EDF_NUMBER_LEN:
            return y
    raise ValueError(f"value {x:g} does not fit in an 8-character EDF header field")


def _physical_range(data: np.ndarray, label: str) -> tuple[float, float]:
    """Physical minimum/maximum for a channel: the data range plus a 1 % margin.

    The margin keeps the extremes off the digital limits after rounding; a constant signal gets
    a range of +-1 (or +-1 % of its value) around it, as EDF needs max > min.
    """
    lo, hi = float(np.min(data)), float(np.max(data))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"signal '{label}' contains NaN or infinite values, which EDF cannot store")
    span = hi - lo
    if span <= 1e-9 * max(1.0, abs(lo), abs(hi)):
        half = max(1.0, 0.01 * abs(lo))
        lo, hi = lo - half, hi + half
    else:
        lo, hi = lo - 0.01 * span, hi + 0.01 * span
    return _edf_bound(lo, up=False), _edf_bound(hi, up=True)


def write_edf(
    path: str | os.PathLike,
    signals: Sequence[dict],
    annotations: Sequence[tuple[float, float, str]] | None = None,
    start_time: _dt.datetime | None = None,
) -> Path:
    """Write an EDF+ (continuous) file, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file (``.edf``).
    signals : list of dict
        One dict per channel: ``label`` (str, truncated to 16 characters), ``fs`` (Hz, may differ
        between channels and need not be an integer), ``unit`` (str, truncated to 8 characters),
        ``data`` (1-D array, physical units, finite values).
    annotations : list of (onset_s, duration_s, text), optional
        EDF+ annotations; onset and duration in seconds (duration 0 for an instant event).
    start_time : datetime.datetime, optional
        Recording start; the current time when not given (as pyedflib does).

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    Samples are stored as 16-bit integers scaled to each channel's range (plus a 1 % margin),
    so the quantisation error is at most half a step, ``(max - min) * 1.02 / 65535 / 2``. EDF stores whole data
    records: a channel whose length is not a whole number of records is padded with its last
    value (at most one record, 1 s for integer rates).

    Raises
    ------
    ValueError
        Empty or non-finite data, no workable data record duration.
    OutputError
        The file cannot be written.
    """
    import pyedflib

    sigs = _check_signals(signals)
    annotations = list(annotations or [])
    record_s = edf_record_duration([s["fs"] for s in sigs])
    spr = [round(s["fs"] * record_s) for s in sigs]
    n_records = max(math.ceil(s["data"].size / k) for s, k in zip(sigs, spr))

    headers, data = [], []
    for s, k in zip(sigs, spr):
        x = s["data"]
        lo, hi = _physical_range(x, s["label"])
        # Quantise here with rounding (edflib truncates, which doubles the worst-case error), in
        # chunks so that an 8-hour channel needs no full-length float64 temporary.
        dig = np.empty(n_records * k, dtype=np.int16)
        scale = (DIGITAL_MAX - DIGITAL_MIN) / (hi - lo)
        for i in range(0, x.size, QUANTISE_CHUNK):
            q = (x[i:i + QUANTISE_CHUNK].astype(np.float64) - lo) * scale + DIGITAL_MIN
            np.rint(q, out=q)
            np.clip(q, DIGITAL_MIN, DIGITAL_MAX, out=q)
            dig[i:i + q.size] = q
        dig[x.size:] = dig[x.size - 1]  # whole records only; repeating the last value adds no step
        data.append(dig)
        headers.append({
            "label": s["label"][:EDF_LABEL_LEN],
            "dimension": s["unit"][:EDF_UNIT_LEN],
            "sample_frequency": s["fs"],
            "physical_min": lo,
            "physical_max": hi,
            "digital_min": DIGITAL_MIN,
            "digital_max": DIGITAL_MAX,
            "transducer": "",
            "prefilter": "",
        })
    # edflib stores one annotation per annotation signal per data record; add signals (up to the
    # EDF+ maximum of 64) so that none is dropped silently.
    n_annot_signals = max(1, math.ceil((len(annotations) + 1) / n_records))
    if n_annot_signals > 64:
        raise ValueError(f"{len(annotations)} annotations do not fit in {n_records} EDF data records")

    final = Path(path)
    with atomic_output(final) as tmp:
        writer = pyedflib.EdfWriter(str(tmp), len(sigs), file_type=pyedflib.FILETYPE_EDFPLUS)
        try:
            with warnings.catch_warnings():
                # pyedflib warns whenever the record duration is set explicitly; it is deliberate.
                warnings.simplefilter("ignore")
                writer.setDatarecordDuration(record_s)
                writer.setSignalHeaders(headers)
                if n_annot_signals > 1:
                    writer.set_number_of_annotation_signals(n_annot_signals)
                if start_time is not None:
                    writer.setStartdatetime(start_time.replace(microsecond=0, tzinfo=None))
            _write_records(writer, data, spr)
            for onset, duration, text in annotations:
                writer.writeAnnotation(float(onset), float(duration) if duration else -1, str(text))
        finally:
            writer.close()
    return final


def _write_records(writer, data: list[np.ndarray], spr: list[int]) -> None:
    """The data records of ``writer.writeSamples(data, digital=True)``, for whole records only.

    pyedflib's ``writeSamples`` builds every data record with ``np.append`` in Python, about
    14 us per record (0.4 s for an 8-h channel in 1-s records); this makes the same edflib calls
    (one ``blockWriteDigitalSamples`` per record, the channels' samples in order) from one
    pre-built int32 array, so the file's bytes are the same.
    """
    n_records = data[0].size // spr[0]
    block = np.concatenate([np.asarray(d, dtype=np.int32).reshape(n_records, k) for d, k in zip(data, spr)], axis=1)
    for row in block:
        if writer.blockWriteDigitalSamples(row) < 0:
            raise OSError("edflib could not write a data record")


# -------------------------------------------------------------------------------------------- WFDB


def write_wfdb(
    path: str | os.PathLike,
    signals: Sequence[dict],
    start_time: _dt.datetime | None = None,
    comments: Sequence[str] | None = None,
    fmt: str = "16",
) -> Path:
    """Write a single-segment WFDB record (``<name>.hea`` + ``<name>.dat``).

    Parameters
    ----------
    path : str or path-like
        The record: ``folder/name`` or ``folder/name.hea``; ``name`` may hold letters, digits,
        ``_`` and ``-`` only (a WFDB rule).
    signals : list of dict
        As for :func:`write_edf`; all channels must share one sampling rate (Hz) and length.
        NaN samples are stored as WFDB's invalid-sample value. Units lose the characters a WFDB
        header cannot hold (``"a.u."`` is written ``"au"``).
    start_time : datetime.datetime, optional
        Recording start, written to the header.
    comments : list of str, optional
        Header comment lines.
    fmt : str
        WFDB storage format for every channel (``"16"``: 16-bit; ``"32"`` for more resolution).

    Returns
    -------
    pathlib.Path
        The ``.hea`` file written.

    Notes
    -----
    Both files are written in a hidden temporary folder beside the record and moved into place
    (data first, header last), so a failure leaves no header pointing to a partial data file.

    Raises
    ------
    ValueError
        Differing rates or lengths, an invalid record name.
    OutputError
        The files cannot be written.
    """
    import wfdb

    sigs = _check_signals(signals)
    p = Path(path)
    if p.suffix.lower() in (".hea", ".dat"):
        p = p.with_suffix("")
    name = p.name
    if not re.fullmatch(r"[-\w]+", name):
        raise ValueError(f"invalid WFDB record name '{name}' (letters, digits, '_' and '-' only)")
    rates = {s["fs"] for s in sigs}
    if len(rates) > 1:
        raise ValueError(
            "WFDB records written here need one sampling rate for all channels; got "
            + ", ".join(f"{s['label']} {s['fs']:g} Hz" for s in sigs)
        )
    lengths = {s["data"].size for s in sigs}
    if len(lengths) > 1:
        raise ValueError("all channels of a WFDB record must have the same number of samples")
    fs = rates.pop()
    matrix = np.column_stack([s["data"] for s in sigs]).astype(np.float64, copy=False)
    hea, dat = p.parent / f"{name}.hea", p.parent / f"{name}.dat"
    with _output_errors(hea):
        if not p.parent.is_dir():
            raise OutputError("cannot write: no such folder", str(p.parent))
        tmpdir = p.parent / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        tmpdir.mkdir()
        try:
            kwargs = {}
            if start_time is not None:
                kwargs["base_datetime"] = start_time.replace(tzinfo=None)
            wfdb.wrsamp(
                name,
                fs=fs,
                units=[_wfdb_unit(s["unit"]) for s in sigs],
                sig_name=[s["label"] for s in sigs],
                p_signal=matrix,
                fmt=[fmt] * len(sigs),
                comments=list(comments or []),
                write_dir=str(tmpdir),
                **kwargs,
            )
            os.replace(tmpdir / dat.name, dat)
            os.replace(tmpdir / hea.name, hea)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return hea


def _wfdb_unit(unit: str) -> str:
    """A unit as WFDB headers accept it (letters, digits, ``_^-?%/``); ``"NU"`` when none is left.

    ``"a.u."`` becomes ``"au"``, ``"\u00b5V"`` becomes ``"uV"``: a dot or space would make the header
    unreadable.
    """
    unit = unit.replace("\u00b5", "u").replace("\u03bc", "u")
    return re.sub(r"[^A-Za-z0-9_^\-?%/]", "", unit) or "NU"


# --------------------------------------------------------------------------------------------- CSV


class Ramp:
    """A column ``k / rate`` for ``k = 0 .. n-1`` (sample times), made a chunk at a time by :func:`write_csv`:
    the values of ``np.arange(n) / rate``, without holding them (35 MB for a 48-h night at 25 Hz)."""

    def __init__(self, n: int, rate: float):
        self.size, self.rate = int(n), float(rate)

    def __getitem__(self, sl: slice) -> np.ndarray:
        a, b, _ = sl.indices(self.size)
        return np.arange(a, b) / self.rate


def write_csv(
    path: str | os.PathLike,
    header: Sequence[str],
    columns: Sequence[np.ndarray],
    fmt: str | Sequence[str] = "%.6g",
    na_rep: str | None = None,
) -> Path:
    """Write numeric columns to a CSV file, atomically, in chunks.

    Parameters
    ----------
    path : str or path-like
        Output file.
    header : list of str
        Column names; the first line is exactly ``",".join(header)``.
    columns : list of array, each shape (n_rows,)
        Numeric columns of equal length (NaN is written as ``nan``), or :class:`Ramp` columns.
    fmt : str or list of str
        printf-style format per column (``"%.3f"``, ``"%d"``), or one for all.
    na_rep : str, optional
        Text written for NaN (``""``: an empty field, which pandas and R read as missing);
        ``nan`` when not given.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        Header, columns and formats disagree in number, or columns differ in length.
    OutputError
        The file cannot be written.
    """
    header = [str(h) for h in header]
    cols = [c if isinstance(c, Ramp) else np.asarray(c).reshape(-1) for c in columns]
    if len(header) != len(cols):
        raise ValueError(f"{len(header)} header names for {len(cols)} columns")
    fmts = [fmt] * len(cols) if isinstance(fmt, str) else [str(f) for f in fmt]
    if len(fmts) != len(cols):
        raise ValueError(f"{len(fmts)} formats for {len(cols)} columns")
    n = cols[0].size if cols else 0
    if any(c.size != n for c in cols):
        raise ValueError("columns differ in length: " + ", ".join(f"{h}={c.size}" for h, c in zip(header, cols)))
    row_fmt = ",".join(fmts)
    final = Path(path)
    with atomic_output(final) as tmp, open(tmp, "w", newline="\n", encoding="utf-8") as fh:
        fh.write(",".join(header) + "\n")
        for start in range(0, n, CSV_CHUNK_ROWS):
            chunk = [c[start:start + CSV_CHUNK_ROWS] for c in cols]
            # %.Nf / %.Ng columns: formatted with array operations, byte for byte what savetxt
            # writes (resp_sep.textfmt); anything else: savetxt, one Python '%' per row.
            text = format_rows(chunk, fmts, na_rep=na_rep)
            if text is not None:
                fh.write(text.decode("ascii"))
            elif na_rep is None:
                np.savetxt(fh, np.column_stack(chunk), fmt=row_fmt, delimiter=",")
            else:
                for row in zip(*chunk):
                    fh.write(",".join(na_rep if v != v else f % v for f, v in zip(fmts, row)) + "\n")
    return final
