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

from resp_sep.chunks import check
from resp_sep.errors import InputError, RespSepError
from resp_sep.sources import (GRID_FS, SOURCES, SignalContext, SourceOutput, compute_sources, fit_length,
                               source_families, source_names)

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
    #: kept for callers of older versions: every input is processed block by block
    stream: bool = True
    #: core length (s) of the blocks an input is processed in (resp_sep.chunks.BLOCK_S)
    block_s: float = 1200.0
    #: CPU threads of a separator (0: resp_sep.parallel.budget() for ONNX Runtime, torch's default for torch)
    threads: int = 0
    #: separator back end: auto (ONNX Runtime on CPU, torch on CUDA), onnx or torch (resp_sep.onnxrun)
    engine: str = "auto"
    #: keep every source's 10-Hz waveform in the result (``Respiration.sources``); False frees them after
    #: the fusion (a batch run that draws no figure: 14 MB per source over 48 h)
    keep_sources: bool = True

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
        from resp_sep.onnxrun import check_engine, uses_onnx

        self.engine = check_engine(self.engine)
        uses_onnx(self.device, self.engine)  # --engine onnx with --device cuda: refused now
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

    Every input channel takes the same path, whatever its format and length: one reading pass
    (:func:`resp_sep.chunks.scan`) and the input checks, then its beats block by block
    (:mod:`resp_sep.beats`), then its sources (:class:`resp_sep.sources.SignalContext`: per-beat
    values, baseline; the separator streamed segment by segment). Memory does not grow with the
    recording beyond the 10-Hz sources. With ECG and PPG, the PPG's reading pass and beats run in
    a second thread (most of the work is in numpy and SciPy, which release the GIL) when the
    thread budget allows; the sources are then computed one input after the other.

    Parameters
    ----------
    rec : Recording or path
    opts : ExtractOptions
    separators : dict, optional
        Cache ``{kind: Separator}`` shared across recordings (batch runs load each model once).
    progress : callable, optional
        ``progress(done, total)`` as the work advances (units of :data:`PROGRESS_UNIT` per input).

    Raises
    ------
    InputError
        No usable input, or none of the method's sources could run.
    ModelError
        A separator checkpoint is missing or broken.
    """
    import threading

    from resp_sep.fusion import fuse
    from resp_sep.io import Recording, read_recording
    from resp_sep.parallel import release_memory

    _warm_imports()
    rec = rec if isinstance(rec, Recording) else read_recording(rec)
    path = str(rec.path)
    avail = available_inputs(rec, opts.channel)
    names = plan(opts.method, opts.signal, set(avail), path, with_separators=bool(opts.model))
    separators = {} if separators is None else separators
    wanted = {k: [n for n in names if SOURCES[n].kind == k] for k in ("ecg", "ppg")}
    kinds = [k for k in ("ecg", "ppg") if wanted[k]]
    several = len(avail) > 1 or len(names) > 1
    cancel = threading.Event()
    meter = _Progress(progress, kinds, {k for k in kinds if any(SOURCES[n].model for n in wanted[k])},
                      {k for k in kinds if any(not SOURCES[n].model for n in wanted[k])})
    hop = min(max(1, int(round(opts.hop_s * 200.0))), 12_288)
    contexts = {}
    for k in kinds:
        contexts[k] = SignalContext(
            kind=k, channel=rec.channel(avail[k].label), path=path, block_s=opts.block_s, cancel=cancel,
            tick=meter.ticker(k),
            separator=lambda kind: _separator(kind, opts, separators, path, several),
            separator_options={"hop": hop, "batch_size": opts.batch_size, "progress": meter.segments(k)})
    try:
        results = _run_inputs(contexts, wanted, path, cancel, meter)
    finally:
        for c in contexts.values():
            c.close()
    outputs, failures, channels, notes, dur = {}, {}, {}, [], 0.0
    for k in kinds:
        got = results[k]
        if isinstance(got, InputError):
            if len(names) == len(wanted[k]):  # the only input: its problem is the answer
                raise got
            failures.update({n: got.problem for n in wanted[k]})
            notes.append(f"{k.upper()} not used: {got.problem}")
            continue
        out, fail = got
        outputs.update(out)
        failures.update(fail)
        channels[k] = contexts[k].channel.label
        notes.extend([avail[k].note] if avail[k].note else [])
        notes.extend(contexts[k].notes)
        dur = max(dur, contexts[k].duration_s)
    if not outputs:
        why = "; ".join(f"{n}: {r}" for n, r in failures.items()) or "no source could run"
        raise InputError(f"no respiration could be derived ({why})", path)
    if failures and len(names) > 1:
        notes.append("sources not used: " + ", ".join(f"{n} ({r})" for n, r in failures.items()))
    n = max(o.wave.size for o in outputs.values())
    waves = {k: fit_length(o.wave, n, fill=np.nan) for k, o in outputs.items()}
    release_memory()  # the passes' temporaries, before fusion allocates its own
    fused = fuse(waves, GRID_FS, families=source_families(waves))
    used = {k: separators[k] for k in separators if f"separator_{k}" in outputs}
    notes.extend(s.note for s in used.values() if getattr(s, "note", ""))
    if not opts.keep_sources:
        del waves
        outputs = {k: SourceOutput(o.name, o.kind, np.zeros(0), o.fs) for k, o in outputs.items()}
    release_memory()
    meter.finish()
    return Respiration(fused.wave, GRID_FS, opts.method, outputs, failures, fused, channels, notes, dur, used)


def _warm_imports() -> None:
    """Import SciPy's signal, ndimage and interpolate modules in a background thread, once.

    ``import scipy.signal`` alone takes about a second of one core (SciPy 1.17); the first block of
    every input needs it, but the reading pass before does not. Started here, the import runs
    while the inputs are read instead of after (Python's import lock makes a thread that needs a
    module wait for it to finish: nothing is used half-imported).
    """
    import sys
    import threading

    wanted = ("scipy.signal", "scipy.ndimage", "scipy.interpolate")
    if all(m in sys.modules for m in wanted) or _WARM.get("started"):
        return
    _WARM["started"] = True

    def run():
        import importlib

        for m in wanted:
            try:
                importlib.import_module(m)
            except Exception:  # noqa: BLE001 - the code that needs it raises the error where it is used
                return

    threading.Thread(target=run, name="respsep-imports", daemon=True).start()


_WARM: dict = {}


#: progress units of a whole extraction (``progress(done, PROGRESS_UNIT)``)
PROGRESS_UNIT = 1000
#: share of the work done once every input's sources exist (the rest: fusion)
_INPUTS_SHARE = 0.85


class _Progress:
    """One ``progress(done, total)`` for a whole extraction, from each input's stages.

    Each input: its reading pass (10 %), its beats block by block and/or its separator segment
    by segment (to 90 %), its sources (100 %); then the fusion. The inputs share
    :data:`_INPUTS_SHARE` of the total; the fusion the rest.
    """

    def __init__(self, fn: Callable[[int, int], None] | None, kinds: list[str], separators: set[str],
                 heuristics: set[str]):
        import threading

        self.fn, self.kinds, self.seps, self.heur = fn, kinds, separators, heuristics
        self.done = {k: 0.0 for k in kinds}
        self.lock = threading.Lock()

    def _set(self, kind: str | None, frac: float) -> None:
        if self.fn is None:
            return
        with self.lock:
            if kind is None:
                total = frac
            else:
                self.done[kind] = max(self.done[kind], min(1.0, frac))
                total = _INPUTS_SHARE * sum(self.done.values()) / max(1, len(self.kinds))
            self.fn(int(round(total * PROGRESS_UNIT)), PROGRESS_UNIT)

    def scanned(self, kind: str) -> None:
        self._set(kind, 0.1)

    def ticker(self, kind: str) -> Callable[[float], None]:
        """The beat pass of ``kind``: to 90 %, or to 50 % when a separator follows."""
        span = 0.4 if kind in self.seps else 0.8
        return lambda frac: self._set(kind, 0.1 + span * frac)

    def segments(self, kind: str) -> Callable[[int, int], None]:
        """The separator of ``kind`` (segments done of total): after the beats, to 90 %."""
        start = 0.5 if kind in self.heur else 0.1
        return lambda done, total: self._set(kind, start + (0.9 - start) * done / max(1, total))

    def sourced(self, kind: str) -> None:
        self._set(kind, 1.0)

    def finish(self) -> None:
        self._set(None, 1.0)


def _run_inputs(contexts: dict, wanted: dict, path: str, cancel, meter: _Progress) -> dict:
    """Check each input and compute its sources; ECG and PPG at once in two threads when the thread
    budget allows (a batch worker with one thread's share does them in turn). Returns ``{kind:
    (outputs, failures) or InputError}``; any other error (or Ctrl-C) stops the other thread after
    its current block and is raised."""
    import threading

    from resp_sep.parallel import budget, release_memory

    def one(kind: str):
        """The heavy part, in parallel: the reading pass, the checks, the beats (block by block)."""
        ctx = contexts[kind]
        try:
            st = ctx.stats
            check(st, ctx.channel.label, path)
        except InputError as e:
            return e
        meter.scanned(kind)
        if st.duration_s < MIN_DURATION_S:
            raise InputError(f"recording too short: {st.duration_s:.1f} s of {kind.upper()}, respsep needs at "
                             f"least {MIN_DURATION_S:.0f} s", path)
        if any(not SOURCES[n].model for n in wanted[kind]):
            try:
                ctx.checked()
                ctx.r_peaks() if kind == "ecg" else ctx.ppg_beats()
            except InputError:
                pass  # the sources report it, each as its failure
        return None

    kinds = list(contexts)
    out: dict = {}
    box: dict = {}
    worker = None
    if len(kinds) == 2 and budget() >= 2:
        def run(kind=kinds[1]):
            try:
                box[kind] = one(kind)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                box["error"] = e

        worker = threading.Thread(target=run, name="respsep-ppg", daemon=True)
        worker.start()
    try:
        for k in (kinds[:1] if worker is not None else kinds):
            out[k] = one(k)
        if worker is not None:
            worker.join()
            if "error" in box:
                raise box["error"]
            out[kinds[1]] = box[kinds[1]]
        # the 10-Hz sources from the beats, one input after the other: their temporaries (whole-grid
        # interpolations and filters) do not pile up, and this part is short
        for k in kinds:
            if out[k] is None:
                out[k] = compute_sources(wanted[k], contexts[k])
                contexts[k].release()
                release_memory()
            meter.sourced(k)
    except BaseException:
        cancel.set()
        if worker is not None:
            worker.join()
        raise
    return out


def _separator(kind: str, opts: ExtractOptions, cache: dict, path: str, several: bool):
    """The separator for ``kind``: a ``--model`` given for it (``KIND=PATH`` or a checkpoint of that signal), else shipped."""
    if kind not in cache:
        from resp_sep.onnxrun import load_separator

        cache[kind] = load_separator(_model_for(kind, opts.model, several, opts.device, opts.engine), kind,
                                     opts.device, threads=opts.threads, engine=opts.engine)
    return cache[kind]


def _model_for(kind: str, models: tuple[str, ...], several: bool, device: str = "auto",
               engine: str = "auto") -> str | None:
    plain = []
    for m in models:
        pre, _, rest = m.partition("=")
        if rest and pre.lower() in ("ecg", "ppg"):
            if pre.lower() == kind:
                return rest
        else:
            plain.append(m)
    for m in plain:
        from resp_sep.checkpoint import checkpoint_signal, resolve_model

        if checkpoint_signal(resolve_model(m, kind), device, engine) == kind:
            return m
    if len(plain) == 1 and not several:
        return plain[0]  # a single model for a single input: whatever it was trained on, the user asked for it
    return None
