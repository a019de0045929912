"""One recording through respsep: read → sources → quality → fusion → respiration and breaths/min → outputs.

:func:`respiration` is the library call behind ``respsep extract`` and ``respsep eval``: it picks
the input channels (ECG, PPG or both), computes the respiratory sources a *method* asks for
(:mod:`resp_sep.sources`), fuses them (:mod:`resp_sep.fusion`) and returns the respiration
waveform with everything needed to explain it. :mod:`resp_sep.outputs` turns it into tables and
files, :mod:`resp_sep.api` is the public entry (``resp_sep.extract``, ``resp_sep.extract_file``).

Methods
    ``fusion`` (default): every source of the default fusion set, on every selected input (the
    separators join it when ``--model`` is given);
    ``separator``: the separator alone (one per selected input; fused when there are two);
    a source name (``ecg_rsa_sarkar2015``, ``ppg_amplitude``, ...): that source alone;
    a comma-separated list of source names: those sources, fused (``fusion`` in the list stands for
    the default set, e.g. ``fusion,separator_ecg,separator_ppg``).
Signals
    ``auto`` (default): ECG and PPG when the recording has both (every PSG does), else the one it has;
    ``both``: both, an error when one is missing; ``ecg`` or ``ppg``: that one only. A named source
    implies its own input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from resp_sep.errors import InputError, RespSepError
from resp_sep.sources import (GRID_FS, SOURCES, SignalContext, compute_sources, fit_length, source_families,
                               source_names)

METHOD_FUSION = "fusion"
METHOD_SEPARATOR = "separator"
SIGNALS = ("auto", "ecg", "ppg", "both")
#: shortest input (s) respsep works on: one breaths/min window.
MIN_DURATION_S = 60.0


def method_help() -> str:
    """One line listing the accepted ``--method`` values."""
    return f"{METHOD_FUSION} (default), {METHOD_SEPARATOR}, or a source: " + ", ".join(SOURCES)


def check_method(method: str) -> None:
    """Raise a usage error (exit 2) for an unknown method or source name."""
    for name in _method_names(method):
        if name not in SOURCES:
            raise RespSepError(f"unknown --method '{name}': use {method_help()}", exit_code=2)


def _method_names(method: str) -> list[str]:
    """Source names of a comma-separated method ("fusion" in a list stands for the default set)."""
    if method in (METHOD_FUSION, METHOD_SEPARATOR):
        return []
    out: list[str] = []
    for m in (m.strip() for m in method.split(",")):
        for n in (source_names(fusion_only=True) if m == METHOD_FUSION else [m] if m else []):
            if n not in out:
                out.append(n)
    return out


def model_signals(method: str, signal: str, models: tuple[str, ...]) -> list[tuple[str | None, list[str]]]:
    """The checkpoints a run may load, as ``(name_or_path, kinds)`` for :func:`resp_sep.checkpoint.check_model`.

    ``--model`` values (``KIND=PATH`` or a path) as given; the shipped models for the inputs the
    method may use otherwise; nothing when the method runs no separator.
    """
    names = _method_names(method)
    if names and not any(SOURCES[n].model for n in names) or (method == METHOD_FUSION and not models):
        return []
    if models:
        out = []
        for m in models:
            pre, _, rest = m.partition("=")
            out.append((rest, [pre.lower()]) if rest and pre.lower() in ("ecg", "ppg") else (m, [None]))
        return [(m, k if k != [None] else (["ecg"] if signal in ("auto", "both", "ecg") else ["ppg"])) for m, k in out]
    if names:
        return [(None, sorted({SOURCES[n].kind for n in names if SOURCES[n].model}))]
    kinds = [signal] if signal in ("ecg", "ppg") else ["ecg", "ppg"]
    return [(None, kinds)]


def check_signal(signal: str) -> None:
    """Raise a usage error (exit 2) for an unknown ``--signal``."""
    if signal not in SIGNALS:
        raise RespSepError(f"--signal must be one of {', '.join(SIGNALS)} (got '{signal}')", exit_code=2)


def plan(method: str, signal: str, available: set[str], path: str | None = None,
         with_separators: bool = False) -> list[str]:
    """The sources a method runs on a recording whose inputs are ``available`` (subset of {"ecg", "ppg"}).

    ``with_separators`` adds the separators of the selected inputs to ``fusion`` (a model was given).

    Raises
    ------
    InputError
        A needed input is missing.
    """
    check_signal(signal)
    check_method(method)
    names = _method_names(method)
    if names:
        if METHOD_FUSION in method.split(","):  # the default set on the inputs there are
            names = [n for n in names if SOURCES[n].kind in available or not SOURCES[n].fusion]
        kinds = {SOURCES[n].kind for n in names}
        missing = kinds - available
        if missing:
            raise InputError(f"no {'/'.join(sorted(k.upper() for k in missing))} channel found for "
                             f"--method {method}; name one with --channel {sorted(missing)[0]}=LABEL", path)
        return names
    kinds = _kinds(signal, available, path, single=(method == METHOD_SEPARATOR))
    if method == METHOD_SEPARATOR:
        return [f"separator_{k}" for k in kinds]
    return [n for k in kinds for n in source_names(k, fusion_only=True) + ([f"separator_{k}"] if with_separators else [])]


def _kinds(signal: str, available: set[str], path: str | None, single: bool) -> list[str]:
    if signal in ("ecg", "ppg"):
        if signal not in available:
            raise InputError(f"no {signal.upper()} channel found; name one with --channel {signal}=LABEL", path)
        return [signal]
    if signal == "both":
        missing = {"ecg", "ppg"} - available
        if missing:
            raise InputError(f"--signal both needs ECG and PPG; no {'/'.join(m.upper() for m in sorted(missing))} "
                             f"channel found (name one with --channel)", path)
        return ["ecg", "ppg"]
    kinds = [k for k in ("ecg", "ppg") if k in available]
    if not kinds:
        raise InputError("no ECG or PPG channel found; name one with --channel ecg=LABEL or ppg=LABEL", path)
    # the separator alone keeps its historical meaning on auto: the ECG model when there is an ECG
    return kinds[:1] if single else kinds


@dataclass
class ExtractOptions:
    """Algorithm settings of :func:`respiration` (the CLI's ``extract`` flags; their defaults live here).

    Output settings (waveform rate, rate window, format) are :class:`resp_sep.outputs.OutputOptions`.

    Attributes
    ----------
    method : str
        ``fusion``, ``separator``, a source name or a comma-separated list (module docstring).
    signal : {"auto", "ecg", "ppg", "both"}
    model : tuple of str
        Separator checkpoints (``KIND=PATH`` or a path); empty: the shipped models where needed.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (separators only).
    channel : dict, optional
        ``{role: label}`` overrides; a label may be an alias list ``"ECG1|EKG"``.
    hop_s : float
        Step (s) between separator segments (61.44 s long).
    batch_size : int, optional
        Separator segments per model call (default: 16 on CPU, 128 on CUDA).
    stream, block_s, threads
        Bounded-memory processing and torch threads (below).
    """

    method: str = METHOD_FUSION
    signal: str = "auto"
    model: tuple[str, ...] = ()
    device: str = "auto"
    channel: dict | None = None
    hop_s: float = 30.72
    batch_size: int | None = None
    #: separator-only methods read the channel in bounded blocks (same output), heuristic ones compute
    #: their sources block by block (resp_sep.blockwise: same beats, sources equal to ~1e-12); False:
    #: whole arrays
    stream: bool = True
    #: core length (s) of the heuristic sources' blocks (resp_sep.blockwise.BLOCK_S)
    block_s: float = 1200.0
    #: torch CPU threads when a separator is loaded (0: torch's default)
    threads: int = 0

    def __post_init__(self):
        if isinstance(self.model, str):
            self.model = (self.model,)
        self.model = tuple(self.model or ())

    def check(self) -> ExtractOptions:
        """Raise :class:`~resp_sep.errors.UsageError` (exit 2) for a bad value; normalises case; returns self."""
        from resp_sep.errors import UsageError
        from resp_sep.options import check_choice, check_device, check_float, check_int

        try:
            check_method(self.method)
        except RespSepError as e:
            raise UsageError(e.problem) from None
        self.signal = check_choice("--signal", self.signal, SIGNALS)
        self.device = check_device(self.device)
        check_float("--hop", self.hop_s, 0, 61.44, lo_open=True, unit="s")
        check_int("--batch-size", self.batch_size, 1, 65_536)
        check_int("--threads", self.threads, 0, 1024)
        check_float("block_s", self.block_s, 0, lo_open=True, unit="s")
        return self


@dataclass
class Respiration:
    """The respiration of one recording and how it was made.

    Attributes
    ----------
    wave : numpy.ndarray, shape (n,)
        Respiration (a.u.) at ``fs``; NaN where no source was valid.
    fs : float
        :data:`resp_sep.sources.GRID_FS` (Hz).
    method : str
    sources : dict
        name -> :class:`resp_sep.sources.SourceOutput` of every source that ran.
    failures : dict
        name -> reason, for sources that could not run on this recording.
    fusion : FusionResult
        Weights, quality, confidence and flags per analysis window.
    channels : dict
        kind ("ecg"/"ppg") -> the channel label used.
    notes : list of str
        Remarks for the user (channel choice, sources that failed).
    duration_s : float
    """

    wave: np.ndarray
    fs: float
    method: str
    sources: dict
    failures: dict
    fusion: object
    channels: dict
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    separators: dict = field(default_factory=dict)

    def rates(self, window_s: float = 60.0):
        """Breaths/min per window of the respiration (:func:`resp_sep.rate.breathing_rate`)."""
        from resp_sep.rate import breathing_rate

        return breathing_rate(self.wave, self.fs, window_s=window_s)


def available_inputs(rec, overrides: dict | None) -> dict[str, object]:
    """Roles ("ecg", "ppg") the recording has -> their :class:`RoleChoice`."""
    from resp_sep.channels import detect_roles

    roles = detect_roles(rec.labels, overrides, path=str(rec.path))
    return {k: roles[k] for k in ("ecg", "ppg") if k in roles}


def respiration(rec, opts: ExtractOptions, separators: dict | None = None,
                progress: Callable[[int, int], None] | None = None) -> Respiration:
    """Respiration of one recording by ``opts.method`` on ``opts.signal``.

    Parameters
    ----------
    rec : Recording or path
    opts : ExtractOptions
    separators : dict, optional
        Cache ``{kind: Separator}`` shared across recordings (batch runs load each model once).
    progress : callable, optional
        ``progress(done, total)`` in separator segments.

    Raises
    ------
    InputError
        No usable input, or none of the method's sources could run.
    ModelError
        A separator checkpoint is missing or broken.
    """
    from resp_sep.fusion import fuse
    from resp_sep.parallel import release_memory
    from resp_sep.io import Recording, read_recording
    from resp_sep.preprocess import load_signal

    rec = rec if isinstance(rec, Recording) else read_recording(rec)
    path = str(rec.path)
    avail = available_inputs(rec, opts.channel)
    names = plan(opts.method, opts.signal, set(avail), path, with_separators=bool(opts.model))
    separators = {} if separators is None else separators
    outputs, failures, channels, notes, dur = {}, {}, {}, [], 0.0
    blockwise = _heuristics_blockwise(rec, names, avail, opts) if opts.stream else {}
    for kind in ("ecg", "ppg"):
        wanted = [n for n in names if SOURCES[n].kind == kind]
        if not wanted:
            continue
        if blockwise.get(kind) is not None:
            out, fail, n_dur, _ = blockwise[kind]
            outputs.update(out)
            failures.update(fail)
            channels[kind] = rec.channel(avail[kind].label).label
            notes.extend([avail[kind].note] if avail[kind].note else [])
            dur = max(dur, n_dur)
            continue
        if opts.stream and all(SOURCES[n].model for n in wanted):
            got = _separator_streamed(rec, kind, opts, separators, len(avail) > 1 or len(names) > 1, progress)
            if got is not None:
                out, label, note, n_dur = got
                outputs.update({n: out for n in wanted})
                channels[kind] = label
                notes.extend([note] if note else [])
                dur = max(dur, n_dur)
                continue
        try:
            sig = load_signal(rec, kind, opts.channel, fs_out=None)
        except InputError as e:
            if len(names) == len(wanted):  # the only input: its problem is the answer
                raise
            failures.update({n: e.problem for n in wanted})
            notes.append(f"{kind.upper()} not used: {e.problem}")
            continue
        if sig.duration_s < MIN_DURATION_S:
            raise InputError(f"recording too short: {sig.duration_s:.1f} s of {kind.upper()}, respsep needs at "
                             f"least {MIN_DURATION_S:.0f} s", path)
        channels[kind] = sig.label
        if sig.note:
            notes.append(sig.note)
        dur = max(dur, sig.duration_s)
        hop = max(1, int(round(opts.hop_s * 200.0)))
        ctx = SignalContext(sig.x, sig.fs, kind, path=path,
                            separator=lambda k: _separator(k, opts, separators, path, len(avail) > 1 or len(names) > 1),
                            separator_options={"hop": min(hop, 12_288), "batch_size": opts.batch_size,
                                               "progress": progress})
        out, fail = compute_sources(wanted, ctx)
        outputs.update(out)
        failures.update(fail)
    if not outputs:
        why = "; ".join(f"{n}: {r}" for n, r in failures.items()) or "no source could run"
        raise InputError(f"no respiration could be derived ({why})", path)
    if failures and len(names) > 1:
        notes.append("sources not used: " + ", ".join(f"{n} ({r})" for n, r in failures.items()))
    n = max(o.wave.size for o in outputs.values())
    waves = {k: fit_length(o.wave, n, fill=np.nan) for k, o in outputs.items()}
    release_memory()  # the block-wise sources' temporaries, before fusion allocates its own
    fused = fuse(waves, GRID_FS, families=source_families(waves))
    release_memory()
    return Respiration(fused.wave, GRID_FS, opts.method, outputs, failures, fused, channels, notes, dur,
                       {k: separators[k] for k in separators if f"separator_{k}" in outputs})


def _heuristics_blockwise(rec, names: list[str], avail: dict, opts: ExtractOptions) -> dict:
    """Heuristic-only inputs' sources computed block by block (:mod:`resp_sep.blockwise`), ECG and PPG at once.

    With both inputs, the PPG runs in a second thread while this one does the ECG (most of the work
    is in numpy and SciPy, which release the GIL); on Ctrl-C or an error the other thread is told
    to stop after its current block. Returns ``{kind: (outputs, failures, duration_s, beats) or
    None}``; ``None`` (or a missing kind) means the whole-array path runs for that input.
    """
    import threading

    from resp_sep import blockwise
    from resp_sep.parallel import budget

    jobs = {}
    for kind in ("ecg", "ppg"):
        wanted = [n for n in names if SOURCES[n].kind == kind]
        if not wanted or kind not in avail or any(SOURCES[n].model for n in wanted):
            continue
        ch = rec.channel(avail[kind].label)
        if not ch.duration_s >= MIN_DURATION_S:
            continue  # the whole-array path says why
        jobs[kind] = (rec, kind, ch.label, wanted, str(rec.path))
    cancel = threading.Event()
    kinds = list(jobs)
    box: dict = {}
    worker = None
    if len(kinds) == 2 and budget() >= 2:  # a batch worker with one thread's share does them in turn
        def run(kind=kinds[1]):
            try:
                box[kind] = blockwise.heuristic_sources(*jobs[kind], block_s=opts.block_s, cancel=cancel)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                box["error"] = e

        worker = threading.Thread(target=run, name="respsep-blocks", daemon=True)
        worker.start()
    try:
        out = {k: blockwise.heuristic_sources(*jobs[k], block_s=opts.block_s, cancel=cancel)
               for k in (kinds[:1] if worker is not None else kinds)}
        if worker is not None:
            worker.join()
            if "error" in box:
                raise box["error"]
            out[kinds[1]] = box[kinds[1]]
    except BaseException:
        cancel.set()
        raise
    return out


def _separator_streamed(rec, kind: str, opts: ExtractOptions, cache: dict, several: bool,
                        progress: Callable[[int, int], None] | None):
    """The separator source of ``kind`` computed in bounded memory (:func:`resp_sep.stream.extract_stream`).

    Same waveform as the whole-array source (``tests/test_pipeline_stream.py``), with the channel
    read range by range: a separator-only method never holds the recording. ``None`` when the
    channel cannot be read in ranges (WFDB) or has missing samples; the whole-array path then runs.

    Returns
    -------
    (SourceOutput, channel label, role note, duration_s) or None
    """
    from resp_sep.sources import SourceOutput, _n_out
    from resp_sep.stream import NotStreamable, extract_stream

    roles = available_inputs(rec, opts.channel)
    if kind not in roles:
        return None
    choice = roles[kind]
    ch = rec.channel(choice.label)
    if not (50.0 <= ch.fs <= 100_000) or ch.n_samples < 2:
        return None  # load_signal gives the error
    blocks = ch.blocks()
    if blocks is None:
        return None
    sep = _separator(kind, opts, cache, str(rec.path), several)
    hop = min(max(1, int(round(opts.hop_s * 200.0))), 12_288)
    with blocks as read:
        try:
            y = extract_stream(sep, read, ch.n_samples, ch.fs, out_fs=GRID_FS, hop=hop, batch_size=opts.batch_size,
                               progress=progress, path=str(rec.path), label=ch.label)
        except NotStreamable:
            return None
    y = fit_length(np.asarray(y, dtype=np.float64), _n_out(ch.n_samples, ch.fs))
    return SourceOutput(f"separator_{kind}", kind, y), ch.label, choice.note, ch.n_samples / ch.fs


def _separator(kind: str, opts: ExtractOptions, cache: dict, path: str, several: bool):
    """The separator for ``kind``: a ``--model`` given for it (``KIND=PATH`` or a checkpoint of that signal), else shipped."""
    if kind not in cache:
        from resp_sep.separate import Separator

        cache[kind] = Separator.from_checkpoint(_model_for(kind, opts.model, several), kind, opts.device,
                                                threads=opts.threads)
    return cache[kind]


def _model_for(kind: str, models: tuple[str, ...], several: bool) -> str | None:
    plain = []
    for m in models:
        pre, _, rest = m.partition("=")
        if rest and pre.lower() in ("ecg", "ppg"):
            if pre.lower() == kind:
                return rest
        else:
            plain.append(m)
    for m in plain:
        from resp_sep.checkpoint import load_checkpoint, resolve_model

        if str(load_checkpoint(resolve_model(m, kind)).get("signal", "")) == kind:
            return m
    if len(plain) == 1 and not several:
        return plain[0]  # a single model for a single input: whatever it was trained on, the user asked for it
    return None
