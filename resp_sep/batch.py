"""Cohort runs: many recordings in one call, as ``respsep extract DIR|LIST --out-dir OUT`` runs them.

:func:`extract_batch` plans and runs a batch: inputs are files, folders, globs and sample lists
(:func:`read_sample_list`: Luna's ``ID<TAB>PATH`` lines); a job-array task takes its share
(:func:`parse_shard`: ``K/N`` or ``slurm``); outputs are named by ID, recordings whose outputs all
exist are skipped, the rest run one after the other or on ``jobs`` worker processes; one bad file
never stops the batch. With an output folder, a summary table (:data:`SUMMARY_COLUMNS`, one row per
input) is rewritten atomically after every recording, so a killed job leaves an up-to-date table
and a resumed run updates it.

Examples
--------
>>> from resp_sep import extract_batch                                          # doctest: +SKIP
>>> res = extract_batch(["cohort.lst"], out_dir="out", rates=True, breaths=True, shard="slurm")
>>> res.exit_code, [r["status"] for r in res.results]
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from resp_sep.errors import (EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, InputError,
                             RespSepError, UsageError)
from resp_sep.outputs import OutputOptions, OutputPaths
from resp_sep.pipeline import ExtractOptions

#: a file with one of these suffixes is read as a sample list, not as a recording
SAMPLE_LIST_SUFFIXES = (".lst", ".list", ".tsv")
#: the summary table in ``--out-dir`` (``respsep-summary.K-of-N.tsv`` for a shard)
SUMMARY_NAME = "respsep-summary.tsv"
SUMMARY_COLUMNS = ("id", "path", "status", "exit_code", "seconds", "windows_scored", "windows", "median_bpm",
                   "median_confidence", "channels", "error")
#: recording suffixes stripped to make an ID from a file name
_RECORDING_SUFFIXES = (".edf", ".bdf", ".rec", ".hea")


@dataclass(frozen=True)
class Item:
    """One input of a batch: its ID (names its outputs) and the recording."""

    id: str
    path: str
    #: where it was named (``LIST:LINE`` for a sample list), for messages
    origin: str = ""


@dataclass
class BatchResult:
    """What a batch did.

    Attributes
    ----------
    results : list of dict
        One per input of this run (shard): ``id``, ``file``, ``status`` (``ok``, ``skipped``,
        ``failed``), ``exit_code``, ``seconds``, the files written, the numbers of
        :meth:`resp_sep.api.Extraction.summary` and ``error`` for a failure (``traceback`` too when
        ``RESPSEP_DEBUG=1``, i.e. ``respsep --debug``).
    interrupted : bool
    not_done : int
        Inputs not started or not finished when the batch was interrupted.
    summary : str or None
        The summary table written.
    shard : tuple or None
        ``(index, count)``, 0-based.
    """

    results: list[dict] = field(default_factory=list)
    interrupted: bool = False
    not_done: int = 0
    summary: str | None = None
    shard: tuple[int, int] | None = None
    batch: bool = True

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.results)

    @property
    def exit_code(self) -> int:
        """0; 130 when interrupted; 4 when some failed (or the one failure's own code for a single file)."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        failed = [r for r in self.results if r["status"] == "failed"]
        if not failed:
            return EXIT_OK
        if self.count("ok") or len(self.results) > 1:
            return EXIT_PARTIAL
        return int(failed[0].get("exit_code", EXIT_INPUT))


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a batch; ``.result`` holds what finished (the summary table is written)."""

    def __init__(self, result: BatchResult):
        super().__init__("interrupted")
        self.result = result


# ------------------------------------------------------------------------------------------ inputs


def is_sample_list(path: str | os.PathLike) -> bool:
    """Whether an input names a sample list (a file ending in one of :data:`SAMPLE_LIST_SUFFIXES`)."""
    p = Path(path)
    return p.suffix.lower() in SAMPLE_LIST_SUFFIXES and p.is_file()


def read_sample_list(path: str | os.PathLike) -> list[Item]:
    """The recordings of a sample list.

    One recording per line: ``ID<TAB>PATH`` or ``PATH`` (the ID is then the file name without its
    suffix); further tab-separated columns (Luna's annotation files) are ignored; blank lines and
    lines starting with ``#`` are skipped. A relative ``PATH`` is relative to the list's folder.

    Raises
    ------
    InputError
        The list cannot be read or names no recording (exit 3).
    UsageError
        A malformed line: an empty or unusable ID (it names output files), a duplicate ID, fields
        separated by spaces instead of a tab (exit 2; the message names the list and the line).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("sample list is not UTF-8 text", str(p)) from None
    except OSError as e:
        raise InputError(f"cannot read sample list: {e.strerror or e}", str(p)) from None
    items: list[Item] = []
    seen: dict[str, int] = {}
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        where = f"{p}:{no}"
        if len(fields) == 1:
            rec = fields[0].strip()
            parts = rec.split()
            if len(parts) >= 2 and not _resolve(rec, p).exists() and _resolve(parts[-1], p).exists():
                raise UsageError(f"{where}: separate the ID and the path with a tab (ID<TAB>PATH), not spaces")
            ident = recording_id(rec)
        else:
            ident, rec = fields[0].strip(), fields[1].strip()
            if not rec:
                raise UsageError(f"{where}: no path after the ID '{ident}'")
        check_id(ident, where)
        if ident in seen:
            raise UsageError(f"{where}: ID '{ident}' is also on line {seen[ident]} (IDs name the outputs)")
        seen[ident] = no
        items.append(Item(ident, str(_resolve(rec, p)), where))
    if not items:
        raise InputError("sample list names no recording (lines: ID<TAB>PATH or PATH; # comments)", str(p))
    return items


def _resolve(rec: str, listing: Path) -> Path:
    q = Path(os.path.expanduser(rec))
    return q if q.is_absolute() else listing.parent / q


def recording_id(path: str) -> str:
    """The ID of a recording named by path: its file name without the recording suffix."""
    name = Path(path).name
    for suf in _RECORDING_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def check_id(ident: str, where: str) -> None:
    """Refuse an ID that cannot name output files (empty, a path, control characters)."""
    if not ident or ident in (".", "..") or "/" in ident or "\\" in ident or not ident.isprintable():
        raise UsageError(f"{where}: ID {shown(ident)!r} cannot name output files "
                         "(no slashes or control characters)")


def collect_inputs(inputs: Sequence[str | os.PathLike]) -> list[Item]:
    """Files, folders, globs and sample lists -> the batch's items, in order (folders and globs sorted)."""
    from resp_sep.io import find_recordings

    items: list[Item] = []
    plain: list[str] = []

    def flush() -> None:
        items.extend(Item(recording_id(q), q) for q in find_recordings(plain))
        plain.clear()

    for x in inputs:
        if is_sample_list(x):
            flush()
            items.extend(read_sample_list(x))
        else:
            plain.append(str(x))
    flush()
    return items


# ------------------------------------------------------------------------------------------ shards


def parse_shard(spec: str | None, environ: dict | None = None) -> tuple[int, int] | None:
    """``(index, count)`` (0-based) of a job-array task, or ``None``.

    Parameters
    ----------
    spec : str
        ``K/N``: the K-th of N shards, **K counting from 1** (``1/2`` and ``2/2``); or ``slurm``:
        from ``SLURM_ARRAY_TASK_ID``, ``SLURM_ARRAY_TASK_MIN`` and ``SLURM_ARRAY_TASK_COUNT``
        (and ``SLURM_ARRAY_TASK_STEP``), so ``--array=0-9``, ``1-10`` or ``0-18:2`` all give shards
        0..9 of 10.
    environ : dict, optional
        Instead of ``os.environ``.

    Raises
    ------
    UsageError
        A malformed spec, K out of range, missing or inconsistent SLURM variables.
    """
    if spec is None or not str(spec).strip():
        return None
    s = str(spec).strip()
    if s.lower() == "slurm":
        env = os.environ if environ is None else environ
        names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")
        missing = [n for n in names if not str(env.get(n, "")).strip()]
        if missing:
            raise UsageError(f"--shard slurm: {', '.join(missing)} not set (run it as a SLURM job array, "
                             "sbatch --array=...)")
        try:
            task, lo, count = (int(env[n]) for n in names)
            step = int(env.get("SLURM_ARRAY_TASK_STEP") or 1)
        except ValueError:
            raise UsageError("--shard slurm: SLURM_ARRAY_TASK_* are not integers") from None
        k, rest = divmod(task - lo, step) if step > 0 else (-1, 0)
        if rest or not (0 <= k < count):
            raise UsageError(f"--shard slurm: task {task} is not in a contiguous array from {lo} with "
                             f"{count} tasks (step {step}); use --array=A-B or A-B:STEP")
        return k, count
    try:
        k, n = (int(v) for v in s.split("/"))
    except ValueError:
        raise UsageError(f"--shard expects K/N (K of N, counting from 1) or slurm (got '{s}')") from None
    if not (1 <= k <= n):
        hint = "; K counts from 1 (for 0-based job arrays use --shard slurm)" if k == 0 and n > 0 else ""
        raise UsageError(f"--shard expects K/N with 1 <= K <= N (got '{s}'){hint}")
    return k - 1, n


def select_shard(items: Sequence[Item], shard: tuple[int, int] | None) -> list[Item]:
    """The items of one shard: every ``count``-th item from ``index``, in input order.

    Every task of a job array sees the same inputs in the same order, so the shards do not overlap
    and together cover every input.
    """
    if shard is None:
        return list(items)
    k, n = shard
    return list(items)[k::n]


# -------------------------------------------------------------------------------------------- plan


def output_paths(item: Item, out_dir: str | os.PathLike, fmt: str, rates: bool, breaths: bool) -> OutputPaths:
    """``OUT/ID.resp.csv`` (``.resp.edf``), ``ID.rates.csv``, ``ID.breaths.csv``."""
    d = Path(out_dir)
    return OutputPaths(str(d / f"{item.id}.resp.{'edf' if fmt == 'edf' else 'csv'}"),
                       str(d / f"{item.id}.rates.csv") if rates else None,
                       str(d / f"{item.id}.breaths.csv") if breaths else None)


def summary_path(out_dir: str | os.PathLike, shard: tuple[int, int] | None) -> Path:
    """The summary table of a run: one per shard, so that array tasks never write one file at once."""
    name = SUMMARY_NAME if shard is None else SUMMARY_NAME.replace(".tsv", f".{shard[0] + 1}-of-{shard[1]}.tsv")
    return Path(out_dir) / name


# --------------------------------------------------------------------------------------------- run


def extract_batch(inputs: Sequence[str | os.PathLike], *, out: str | None = None, out_dir: str | None = None,
                  rates: bool | str | None = None, breaths: bool | str | None = None, plot: str | None = None,
                  options: ExtractOptions | None = None, output: OutputOptions | None = None,
                  overwrite: bool = False, jobs: int = 1, shard: str | tuple[int, int] | None = None,
                  on_result: Callable[[dict], None] | None = None,
                  progress: Callable[[Item, int, int], None] | None = None) -> BatchResult:
    """Extract many recordings (or one), writing every recording's outputs all-or-nothing.

    Parameters
    ----------
    inputs : list of str
        Recordings, folders, globs and sample lists (:func:`read_sample_list`).
    out : str, optional
        The waveform file when there is one recording and no ``out_dir`` (``rates``, ``breaths``
        and ``plot`` are then file names too).
    out_dir : str, optional
        Output folder: ``ID.resp.csv`` (or ``.edf``), and with ``rates``/``breaths`` set
        ``ID.rates.csv``/``ID.breaths.csv``; the summary table :func:`summary_path`.
    options, output : ExtractOptions, OutputOptions
        Algorithm and output settings (checked here; defaults when not given).
    overwrite : bool
        Replace existing outputs (default: skip a recording whose outputs all exist).
    jobs : int
        Worker processes.
    shard : str or (index, count), optional
        This task's share (:func:`parse_shard`).
    on_result : callable, optional
        Called with each result dict as it comes (in input order).
    progress : callable, optional
        ``progress(item, done, total)`` while a recording runs (one process only).

    Returns
    -------
    BatchResult

    Raises
    ------
    UsageError, OutputError, ModelError
        Before any work: a bad option, an output that cannot be written, a broken model.
    BatchInterrupted
        Ctrl-C/SIGTERM: no partial output is left; ``.result`` has what finished.
    """
    from resp_sep.options import check_csv_path, check_int, check_plot_path, output_format
    from resp_sep.pipeline import model_signals
    from resp_sep.writers import check_folder, check_outputs, make_folder

    # every option first, before a file is read or created: a usage error is exit 2, never a per-file failure
    algo = dataclasses.replace(options or ExtractOptions()).check()
    out_opts = dataclasses.replace(output or OutputOptions())
    out_opts.fmt = output_format(out_opts.fmt, out)  # None: from --out's suffix
    out_opts.check()
    check_int("--jobs", jobs, 1, 1024)
    check_plot_path(plot)
    sh = shard if isinstance(shard, tuple) or shard is None else parse_shard(shard)
    items = select_shard(collect_inputs(inputs), sh)
    batch = out_dir is not None or len(items) > 1 or any(is_sample_list(x) for x in inputs)
    if batch and out:
        raise UsageError("several recordings: use --out-dir instead of --out")
    if not batch and not out:
        raise UsageError("give --out FILE (or --out-dir DIR)")
    if batch and plot:
        raise UsageError("--plot works on a single recording")
    if batch and out_dir is None:
        raise UsageError("a sample list writes into a folder: give --out-dir")
    if not batch:
        for opt, v in (("--rates", rates), ("--breaths", breaths)):
            if v is True:
                raise UsageError(f"{opt} needs a file name for a single recording")
        check_csv_path(rates if isinstance(rates, str) else None, "--rates")
        check_csv_path(breaths if isinstance(breaths, str) else None, "--breaths")
    if out_dir:
        check_folder(out_dir)
    tasks: list[tuple[Item, OutputPaths]] = []
    res = BatchResult(shard=sh, batch=batch)
    claimed: dict[str, Item] = {}  # output -> input: two recordings must not write one file
    for it in items:
        paths = output_paths(it, out_dir, out_opts.fmt, bool(rates), bool(breaths)) if batch else \
            OutputPaths(out, rates or None, breaths or None, plot)
        key = str(Path(paths.out).absolute())
        if key in claimed:
            raise UsageError(f"{claimed[key].path} and {it.path} would both write {paths.out} (same ID "
                             f"'{it.id}'); extract them into separate --out-dir folders or give them IDs in a "
                             "sample list")
        claimed[key] = it
        if not batch:
            check_outputs({"--out": paths.out, "--rates": paths.rates, "--breaths": paths.breaths,
                           "--plot": paths.plot}, inputs=[it.path])
        elif Path(out_dir).is_dir():
            check_outputs({"output": paths.out, "rates output": paths.rates, "breaths output": paths.breaths},
                          inputs=[it.path])
        if not overwrite and all(Path(x).is_file() for x in paths.files()):
            info = {"id": it.id, "file": it.path, "out": paths.out, "status": "skipped", "exit_code": 0,
                    "note": "outputs exist (use --overwrite)"}
            res.results.append(info)
            if on_result:
                on_result(info)
            continue
        tasks.append((it, paths))
    needed = model_signals(algo.method, algo.signal, algo.model) if tasks else []
    if needed:  # fail early, once, on a missing or broken model (exit 5), before any output is created
        from resp_sep.checkpoint import check_model  # imports torch only to export a model's ONNX graph once

        for name, kinds in needed:
            check_model(name, kinds, device=algo.device, engine=algo.engine)
    created = make_folder(out_dir) if (out_dir and tasks) else None
    table = _Summary(summary_path(out_dir, sh), items) if out_dir and (tasks or res.results) else None
    from resp_sep.parallel import cores

    per_job = algo.threads or max(1, cores() // jobs)  # the allowed cores (SLURM, taskset), not the node's
    algo = dataclasses.replace(algo, threads=per_job)
    if table is not None:
        table.update(res.results)
        res.summary = str(table.path)

    def report(info: dict) -> None:
        res.results.append(info)
        if table is not None:
            table.update([info])
        if on_result:
            on_result(info)

    t_start = time.time() - 1.0  # file times may be rounded
    try:
        if jobs > 1 and len(tasks) > 1:
            from resp_sep.interrupts import WorkerDied, run_pool
            from resp_sep.writers import remove_stale_temps

            finals = [x for _, p in tasks for x in p.files()]
            try:
                run_pool(_run_task, [(it, p, algo, out_opts) for it, p in tasks], jobs,
                         on_result=lambda i, info: report(info), initializer=_worker_init, initargs=(per_job,),
                         on_stop=lambda pids: remove_stale_temps(finals, list(pids)))
            except WorkerDied as e:
                done = {r["id"] for r in res.results}
                for it, p in tasks:
                    if it.id not in done:
                        report(_failure(it, p, f"{it.path}: {e}", EXIT_INTERNAL))
        else:
            _worker_init(per_job)
            for it, p in tasks:
                cb = None if progress is None else (lambda d, t, it=it: progress(it, d, t))
                report(_run_task(it, p, algo, out_opts, cb))
    except KeyboardInterrupt:
        res.interrupted = True
        # a worker may have renamed its outputs into place while the stop was on its way: count them
        reported = {r["id"] for r in res.results}
        for it, p in tasks:
            if it.id not in reported and all(Path(x).is_file() and Path(x).stat().st_mtime >= t_start
                                             for x in p.files()):
                report({"id": it.id, "file": it.path, "out": p.out, "status": "ok", "exit_code": 0,
                        "note": "finished as the batch stopped"})
        finished = {r["id"] for r in res.results}
        res.not_done = sum(it.id not in finished for it, _ in tasks)
        if table is not None:
            table.mark_interrupted()
        _tidy(created, out_dir, res)
        raise BatchInterrupted(res) from None
    _tidy(created, out_dir, res)
    return res


def _tidy(created, out_dir, res: BatchResult) -> None:
    """Remove an output folder this run created when nothing was written into it (the summary aside)."""
    from resp_sep.writers import remove_if_empty

    if created is None or any(r["status"] == "ok" for r in res.results):
        return
    if res.summary:
        Path(res.summary).unlink(missing_ok=True)
        res.summary = None
    remove_if_empty(out_dir, created)


_WORKER: dict = {}


def _worker_init(threads: int) -> None:
    # torch (1.7 s of CPU and 220 MB to import) is loaded only when a separator runs: its thread
    # count goes through the environment it reads at import, or directly when already loaded
    threads = max(1, threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    _WORKER.setdefault("separators", {})


def _failure(it: Item, paths: OutputPaths, error: str, code: int, tb: str | None = None) -> dict:
    info = {"id": it.id, "file": it.path, "out": paths.out, "status": "failed", "exit_code": code, "error": error}
    if tb:
        info["traceback"] = tb
    return info


def _run_task(it: Item, paths: OutputPaths, algo: ExtractOptions, out_opts: OutputOptions,
              progress: Callable[[int, int], None] | None = None) -> dict:
    """Extract and write one recording; every error becomes a result (the batch goes on)."""
    from resp_sep.api import extract_with
    from resp_sep.outputs import write_outputs

    t = time.perf_counter()
    if not paths.plot and algo.keep_sources:  # only the figure draws the sources: free them after the fusion
        algo = dataclasses.replace(algo, keep_sources=False)
    try:
        ext = extract_with(it.path, algo, out_opts, _WORKER.setdefault("separators", {}), progress)
        written = write_outputs(ext, paths)
        info = {"id": it.id, **ext.info, **written, "status": "ok", "exit_code": 0}
    except RespSepError as e:
        return {**_failure(it, paths, str(e), e.exit_code), "seconds": round(time.perf_counter() - t, 2)}
    except MemoryError:
        return _failure(it, paths, f"{it.path}: out of memory", EXIT_INTERNAL)
    except Exception as e:  # one bad file must not stop a night's batch
        import traceback

        tb = traceback.format_exc() if os.environ.get("RESPSEP_DEBUG") == "1" else None
        return _failure(it, paths, f"{it.path}: internal error: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
                        + ("" if tb else " (rerun with --debug)"), EXIT_INTERNAL, tb)
    info["file"] = it.path
    info["seconds"] = round(time.perf_counter() - t, 2)
    return info


# ----------------------------------------------------------------------------------------- summary


def shown(text: str) -> str:
    """``text`` on one line: control characters (a newline in a file name) written as escapes (``\\n``)."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


class _Summary:
    """The summary table of a run (:data:`SUMMARY_COLUMNS`): read, updated by ID, rewritten atomically."""

    def __init__(self, path: Path, items: Sequence[Item]):
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.is_file():
            self.rows = _read_summary(path)
        for it in items:  # one row per input of this run, also before it ran
            self.rows.setdefault(it.id, {"id": it.id, "path": it.path, "status": "pending"})

    def update(self, infos: Sequence[dict]) -> None:
        for info in infos:
            old = self.rows.get(info["id"], {})
            if info["status"] == "skipped" and old.get("status") == "ok":
                continue  # done by an earlier run: keep its numbers
            self.rows[info["id"]] = {
                "id": info["id"], "path": info.get("file", old.get("path", "")), "status": info["status"],
                "exit_code": info.get("exit_code", ""), "seconds": info.get("seconds", ""),
                "windows_scored": info.get("windows_scored", ""), "windows": info.get("windows", ""),
                "median_bpm": _num(info.get("median_bpm")), "median_confidence": _num(info.get("median_confidence")),
                "channels": ";".join(f"{k}={v}" for k, v in (info.get("channels") or {}).items()),
                "error": info.get("error", "")}
        self.write()

    def mark_interrupted(self) -> None:
        for r in self.rows.values():
            if r.get("status") == "pending":
                r["status"] = "interrupted"
        self.write()

    def write(self) -> None:
        from resp_sep.writers import atomic_output

        lines = ["\t".join(SUMMARY_COLUMNS)]
        lines += ["\t".join(_cell(r.get(c, "")) for c in SUMMARY_COLUMNS) for r in self.rows.values()]
        with atomic_output(self.path) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _num(v) -> str:
    return "" if v is None else f"{v:.3f}"


def _cell(v) -> str:
    """A TSV cell: tabs, newlines and other control characters escaped (a cell is never split)."""
    return shown(v).replace("\t", "\\t")


def _read_summary(path: Path) -> dict[str, dict]:
    """Rows of an earlier summary table, by ID (an unreadable one is started afresh)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    if not lines:
        return {}
    head = lines[0].split("\t")
    rows = {}
    for ln in lines[1:]:
        r = dict(zip(head, ln.split("\t")))
        if r.get("id"):
            rows[r["id"]] = r
    return rows
