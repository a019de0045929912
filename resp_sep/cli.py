"""The ``respsep`` command line: a thin layer over the library calls.

Exit codes (also in ``respsep --help`` and docs/cli.md): 0 success, 1 internal error (a bug),
2 invalid usage, 3 unusable input recording, 4 batch finished with some files failed,
5 model checkpoint problem, 6 output cannot be written, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Idle torch (OpenMP) threads sleep instead of spinning. With the default (spinning) a 2-thread
# extraction on a machine whose cores are busy with other work ran 13x slower (118 s instead of
# 9 s for an 8-h night, docs/performance.md): every parallel region waits for a descheduled
# thread while the spinning one burns the CPU it needs. Set before torch is imported (libgomp
# reads it once); an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# torch (2.1x) creates $TMPDIR/torchinductor_$USER when it is imported, whether anything is compiled
# or not, and leaves it behind; with a cache folder named it creates nothing until it compiles
# (only `--device cuda` runs torch.compile), and then in the user's cache, not in $TMPDIR.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "respsep", "torchinductor"))
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from resp_sep import __version__
from resp_sep.errors import (
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    RespSepError,
)

_EXIT_HELP = "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + "."

app = typer.Typer(
    name="respsep",
    help="Breathing signal and breathing rate from ECG and PPG recordings, without a respiration sensor.\n\n"
    + _EXIT_HELP,
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        print(f"respsep {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for internal errors."),
) -> None:
    """respsep: breathing signal and breathing rate from ECG and PPG."""
    if debug:
        os.environ["RESPSEP_DEBUG"] = "1"


# ----------------------------------------------------------------------------------------- helpers


def _fail_line(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)


def _emit_json(obj) -> None:
    """Print JSON to stdout (no rich markup, no wrapping) for scripts."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# -------------------------------------------------------------------------------------------- info


@app.command()
def info(
    files: list[str] = typer.Argument(..., help="Recordings: EDF/BDF files, WFDB records (.hea), folders, globs or sample lists."),
    channel: Optional[list[str]] = typer.Option(None, "--channel", "-c", help="Force a role: ROLE=LABEL (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show channels, sampling rates, units, durations and detected roles of recordings."""
    from resp_sep.channels import detect_roles, parse_overrides
    from resp_sep.batch import collect_inputs
    from resp_sep.io import read_recording

    overrides = parse_overrides(channel)
    paths = [it.path for it in collect_inputs(files)]  # files, folders, globs and sample lists
    results, failures = [], []
    for p in paths:
        try:
            rec = read_recording(p)
            roles = detect_roles(rec.labels, overrides, path=str(rec.path))
        except RespSepError as e:
            failures.append({"file": p, "error": e.problem, "exit_code": e.exit_code})
            if not as_json:
                _fail_line(str(e))
            continue
        by_label = {c.label: r for r, c in roles.items()}
        item = {
            "file": str(rec.path),
            "format": rec.format,
            "start_time": rec.start_time.isoformat() if rec.start_time else None,
            "duration_s": round(rec.duration_s, 3),
            "channels": [
                {"label": c.label, "fs_hz": c.fs, "unit": c.unit, "n_samples": c.n_samples,
                 "duration_s": round(c.duration_s, 3), "role": by_label.get(c.label)}
                for c in rec.channels
            ],
            "roles": {r: c.label for r, c in roles.items()},
            "notes": {r: c.note for r, c in roles.items() if c.note},
            "n_annotations": None,
            "warnings": list(rec.warnings),
        }
        try:
            item["n_annotations"] = len(rec.annotations)
        except RespSepError as e:  # a damaged annotation channel is worth a note, not a failure
            item["notes"]["annotations"] = e.problem
        results.append(item)
        if not as_json:
            _print_info(item)
            for w in item["warnings"]:
                _warn_line(f"{item['file']}: {w}")
    if as_json:
        _emit_json({"recordings": results, "failed": failures})
    if failures:
        raise typer.Exit(EXIT_PARTIAL if results else failures[0]["exit_code"])


def _print_info(item: dict) -> None:
    t = Table(title=f"{item['file']}  [dim]({item['format']}, {item['duration_s'] / 60:.1f} min"
              + (f", start {item['start_time']}" if item["start_time"] else "") + ")[/]",
              title_justify="left")
    for col, just in [("channel", "left"), ("rate (Hz)", "right"), ("unit", "left"),
                      ("duration (s)", "right"), ("role", "left")]:
        t.add_column(col, justify=just)
    for c in item["channels"]:
        role = c["role"] or ""
        t.add_row(c["label"], f"{c['fs_hz']:g}", c["unit"], f"{c['duration_s']:.1f}",
                  f"[bold green]{role}[/]" if role else "")
    _print_table(t)
    for r, note in item["notes"].items():
        out.print(f"  [yellow]note[/] {r}: {note}")
    if item["n_annotations"]:
        out.print(f"  {item['n_annotations']} annotations")


# ------------------------------------------------------------------------------------------- train


@app.command()
def train(
    inputs: Optional[list[str]] = typer.Argument(None, help="Recordings, folders or globs (EDF/BDF/WFDB). No reference needed."),
    signal: Optional[str] = typer.Option(None, "--signal", "-s", help="ecg or ppg (default: ecg)."),
    out_file: Optional[str] = typer.Option(None, "--out", "-o", help="Checkpoint to write (default: respsep-model.pt)."),
    config: Optional[str] = typer.Option(None, "--config", help="TOML file with any of these options (command line wins)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default: 10)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Segments per step (default: 256)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate (default: 1e-3)."),
    hop_s: Optional[float] = typer.Option(None, "--hop", help="Step between training segments in s (default: 15.36)."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Fraction of subjects for validation (default: 0.2)."),
    val_subjects: Optional[list[str]] = typer.Option(None, "--val-subject", help="Validation subject (record name); repeatable."),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="Subject never used (held-out test); repeatable."),
    val_ref: Optional[str] = typer.Option(None, "--val-ref", help="Validation reference role: thor, nasal or none (default: thor)."),
    simulate: Optional[int] = typer.Option(None, "--simulate", help="Add N simulated recordings (known respiration)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Cap optimiser steps per epoch (0 = full epochs)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (split, order, init) (default: 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default: auto)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (0 = torch default)."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Segment cache folder (default: OUT.cache)."),
    channel: Optional[list[str]] = typer.Option(None, "--channel", "-c", help="Force a role: ROLE=LABEL (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT.last.pt exactly where it stopped."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from this checkpoint's weights (fine-tune; fresh optimiser)."),
    val_every: Optional[int] = typer.Option(None, "--val-every", help="Validate every N optimiser steps; best kept at step granularity (0 = per epoch)."),
    lr_schedule: Optional[str] = typer.Option(None, "--lr-schedule", help="constant, cosine, step or onecycle (default: constant)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Stop cleanly after this many minutes of training (0 = none)."),
    folder_weight: Optional[list[str]] = typer.Option(None, "--folder-weight", help="FOLDER=W: sampling weight of that folder's recordings (0 excludes); repeatable."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
) -> None:
    """Train a separator on recordings, self-supervised (no respiration reference needed).

    The checkpoint kept is the epoch with the best separation metric on validation subjects
    (breaths/min MAE against their thor/nasal reference when present, else the label-free score).
    """
    from resp_sep.channels import parse_overrides
    from resp_sep.train import TrainConfig
    from resp_sep.train import train as run_train

    given = {k: v for k, v in dict(
        inputs=inputs or None, signal=signal, out=out_file, epochs=epochs, batch_size=batch_size, lr=lr, hop_s=hop_s,
        val_fraction=val_fraction, val_subjects=val_subjects or None, exclude=exclude or None, val_ref=val_ref,
        simulate=simulate, max_steps_per_epoch=max_steps, seed=seed, device=device, threads=threads,
        cache_dir=cache_dir, channel=parse_overrides(channel) or None, init=init, val_every=val_every,
        lr_schedule=lr_schedule, time_budget_min=time_budget,
        folder_weights=_folder_weights(folder_weight) if folder_weight else None).items() if v is not None}
    from pathlib import Path

    from resp_sep.options import check_train
    from resp_sep.train import cache_path, check_resume
    from resp_sep.writers import check_folder

    try:
        cfg = TrainConfig.from_toml(config, **given) if config else TrainConfig(**given)
    except TypeError as e:  # a TOML value of the wrong kind (a list where a number belongs)
        raise RespSepError(f"invalid training option: {' '.join(str(e).split())}", exit_code=2) from None
    check_train(cfg)  # every value before any work: exit 2
    out_path = Path(cfg.out)
    if out_path.is_dir():
        raise RespSepError("--out is a folder; give a checkpoint file name", str(out_path), exit_code=6)
    check_folder(out_path.parent if str(out_path.parent) else ".", "--out folder")
    check_folder(cache_path(cfg), "--cache-dir")
    if resume:
        check_resume(cfg, resume)  # missing/finished run: exit 5/2 now, not after caching the data
    cache_existed = cache_path(cfg).exists()
    log = (lambda *a, **k: None) if (quiet or as_json) else (lambda m: err.print(m))
    if not (quiet or as_json):
        err.print("[bold]respsep train[/] resolved config (seed %d):" % cfg.seed)
        err.print(json.dumps(cfg.to_dict(), indent=None, default=str), markup=False)
    prog = None if (quiet or as_json) else _TrainProgress()
    try:
        summary = run_train(cfg, resume=resume, log=log, progress=prog)
    except BaseException:
        if not cache_existed and not Path(cfg.out).exists() and not resume:
            import shutil

            shutil.rmtree(cache_path(cfg), ignore_errors=True)  # a failed first run leaves no OUT.cache/
        raise
    finally:
        if prog:
            prog.close()
    if not summary:  # a non-zero rank of a torchrun job: rank 0 reports
        return
    if as_json:
        _emit_json({k: v for k, v in summary.items()})
        return
    if not quiet:
        best = summary["best_metric"]
        out.print(f"checkpoint: [bold]{summary['checkpoint']}[/] (epoch {summary['best_epoch']}, "
                  f"{summary['metric_name']} = {best:.3f})" if best == best else
                  f"checkpoint: [bold]{summary['checkpoint']}[/]")
        out.print(f"respiration encoder: [bold]{summary['resp_encoder']}[/]  |  "
                  f"{summary['train_segments']} training segments, {summary['segments_per_s']:.1f} segments/s "
                  f"on {summary['device']}  |  resume state: {summary['last_checkpoint']}")


def _folder_weights(items: list[str]) -> dict[str, float]:
    """``["mitdb-wfdb=0", "marsh-edf=2"]`` -> ``{"mitdb-wfdb": 0.0, "marsh-edf": 2.0}`` (usage error otherwise)."""
    res = {}
    for it in items:
        key, sep, w = it.partition("=")
        try:
            res[key.strip()] = float(w)
        except ValueError:
            raise RespSepError(f"--folder-weight expects FOLDER=WEIGHT (got '{it}')", exit_code=2) from None
        if not sep or not key.strip() or res[key.strip()] < 0:
            raise RespSepError(f"--folder-weight expects FOLDER=WEIGHT with WEIGHT >= 0 (got '{it}')", exit_code=2)
    return res


class _TrainProgress:
    """rich progress bar for training: loss, epoch, ETA; one table row per epoch."""

    def __init__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                          TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn(),
                          console=err, transient=False)
        self.task = None

    def __call__(self, event: str, **kw) -> None:
        if event == "start":
            self.p.start()
            self.task = self.p.add_task("train", total=kw["total"], epoch=kw["start_epoch"] + 1, loss=float("nan"))
        elif event == "step":
            self.p.update(self.task, advance=1, epoch=kw["epoch"], loss=kw["loss"])
        elif event == "epoch":
            e = kw["entry"]
            v = e.get("val", {})
            line = (f"epoch {e['epoch']} step {e.get('step', '-')}: train loss {e['train'].get('total', float('nan')):.4f} "
                    f"(recon {e['train'].get('recon', float('nan')):.4f}), {e['segments_per_s']:.1f} seg/s")
            if v:
                line += f" | val recon {v['val_recon']:.4f}"
                if "val_recon_excess" in v:
                    line += f" (floor +{v['val_recon_excess']:.4f})"
                line += f", resp encoder {v['resp_encoder']} (score {v['score']:.2f})"
                if "mae_bpm" in v:
                    line += (f", MAE {v['mae_bpm']:.2f} breaths/min (best encoder {v['best_encoder_mae_bpm']:.2f}, "
                             f"constant guess {v['constant_guess_mae_bpm']:.2f}), |r| {v['abs_r']:.2f}")
            self.p.console.print(line + (" [green]*kept[/]" if kw.get("improved") else ""))

    def close(self) -> None:
        self.p.stop()


# ---------------------------------------------------------------------------------------- simulate


@app.command()
def simulate(
    out_path: str = typer.Argument(..., metavar="OUT", help="File to write (.edf, or .hea for WFDB)."),
    minutes: float = typer.Option(10.0, "--minutes", "-m", help="Duration in minutes."),
    fs: float = typer.Option(256.0, "--fs", help="Sampling rate in Hz."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same recording)."),
    breathing: str = typer.Option("varying", "--breathing", help="varying or constant."),
    rate: float = typer.Option(15.0, "--rate", help="Breaths/min when --breathing constant."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Write a synthetic recording with a known respiration (ECG, PPG, nasal, thorax, true respiration)."""
    from pathlib import Path

    from resp_sep.errors import OutputError
    from resp_sep.options import check_float, check_seed
    from resp_sep.writers import check_outputs

    check_seed(seed)
    check_float("--rate", rate, 1, 120, unit="breaths/min")
    check_float("--minutes", minutes, 0, 7 * 24 * 60, lo_open=True, unit="min")
    check_float("--fs", fs, 50, 10000, unit="Hz")
    from resp_sep.simulate import simulate as run_sim
    from resp_sep.simulate import write_simulation

    p = Path(out_path)
    fmt = "wfdb" if p.suffix.lower() == ".hea" else "edf"
    if p.suffix.lower() not in (".edf", ".hea"):
        raise RespSepError(f"{out_path}: output must end in .edf or .hea", exit_code=2)
    if p.exists() and not overwrite:
        raise OutputError("exists (use --overwrite)", out_path)
    check_outputs({"OUT": p} if fmt == "edf" else {"OUT": p, "data file": p.with_suffix(".dat")})
    if breathing not in ("varying", "constant"):
        raise RespSepError(f"--breathing must be varying or constant (got '{breathing}')", exit_code=2)
    if minutes <= 0 or not (50 <= fs <= 10000):
        raise RespSepError("--minutes must be > 0 and --fs within 50..10000 Hz", exit_code=2)
    kw = {"rate_bpm": rate} if breathing == "constant" else {}
    sim = run_sim(duration_s=minutes * 60, fs=fs, seed=seed, breathing=breathing, **kw)
    written = write_simulation(sim, p.with_suffix("") if fmt == "wfdb" else p, fmt=fmt)
    if not quiet:
        out.print(f"wrote {written} ({minutes:g} min at {fs:g} Hz, seed {seed})")


# ----------------------------------------------------------------------------------------- extract

_ALGO_DEFAULTS, _OUT_DEFAULTS = None, None


def _defaults():
    """The library's defaults (ExtractOptions, OutputOptions): the CLI's defaults are theirs, written once."""
    global _ALGO_DEFAULTS, _OUT_DEFAULTS
    if _ALGO_DEFAULTS is None:
        from resp_sep.outputs import OutputOptions
        from resp_sep.pipeline import ExtractOptions

        _ALGO_DEFAULTS, _OUT_DEFAULTS = ExtractOptions(), OutputOptions()
    return _ALGO_DEFAULTS, _OUT_DEFAULTS


def _shown(text) -> str:
    """Text for a status line: control characters escaped (a file name never splits a line), no rich markup."""
    from rich.markup import escape

    from resp_sep.batch import shown

    return escape(shown(str(text)))


@app.command()
def extract(
    recordings: list[str] = typer.Argument(..., help="Recordings (EDF/BDF/WFDB, mixed), folders, globs, or sample lists (.lst/.list/.tsv: ID<TAB>PATH or PATH per line, # comments; outputs named by ID)."),
    out_file: Optional[str] = typer.Option(None, "--out", "-o", help="Output file for a single recording (resp.csv, or resp.edf for EDF+)."),
    out_dir: Optional[str] = typer.Option(None, "--out-dir", "-d", help="Output folder for batches: ID.resp.csv per recording and the summary table respsep-summary.tsv."),
    method: str = typer.Option(_defaults()[0].method, "--method", help="fusion (default: the quality-weighted fusion of the ECG and PPG heuristic sources; the separators join it with --model), separator, a source name (docs/method.md) or a comma-separated list of sources to fuse."),
    signal: str = typer.Option(_defaults()[0].signal, "--signal", "-s", help="auto (ECG and PPG when both are present), ecg, ppg or both."),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="Separator checkpoint (path or shipped name; ecg=PATH / ppg=PATH when both are used; repeatable); adds the separators to the fusion."),
    device: str = typer.Option(_defaults()[0].device, "--device", help="auto, cpu or cuda."),
    channel: Optional[list[str]] = typer.Option(None, "--channel", "-c", help="Force a role: ROLE=LABEL, or an alias list ROLE=A|B|C (the first label present wins; repeatable)."),
    out_rate: float = typer.Option(_defaults()[1].out_rate, "--out-rate", help="Sample rate of the output respiration in Hz."),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv (time_s,resp) or edf (EDF+ with the respiration and annotations: breaths, low-confidence and disagree windows, gaps); default: edf for an --out ending in .edf, else csv."),
    window: float = typer.Option(_defaults()[1].window_s, "--window", help="Rate window in s, from the recording start (30: sleep epochs at 0, 30, 60 ... s)."),
    rates: Optional[str] = typer.Option(None, "--rates", help="Also write breaths/min per window with quality, confidence, flag and contributing sources: a CSV path (single file), or any value in batch mode (ID.rates.csv in --out-dir)."),
    breaths: Optional[str] = typer.Option(None, "--breaths", help="Also write one row per breath (onset_s, end_s, duration_s, amplitude, confidence): a CSV path (single file), or any value in batch mode (ID.breaths.csv)."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Single file: write an overview figure (PNG, PDF, SVG)."),
    hop_s: float = typer.Option(_defaults()[0].hop_s, "--hop", help="Step between separator segments in s (segments are 61.44 s; smaller = more overlap)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Segments per model call (default: 16 on CPU, 128 on CUDA)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (default: skip them)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Files processed in parallel (CPU)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Only this task's share of the inputs: K/N (the K-th of N, K counting from 1) or slurm (from SLURM_ARRAY_TASK_ID/_MIN/_COUNT, any --array base)."),
    threads: int = typer.Option(_defaults()[0].threads, "--threads", help="Separator CPU threads per job (0 = cores / jobs)."),
    engine: str = typer.Option(_defaults()[0].engine, "--engine", help="Separator back end: auto (ONNX Runtime on CPU, torch on CUDA), onnx or torch (the reference)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report (one entry per file) instead of tables."),
) -> None:
    """Extract the respiration waveform (and optionally breaths/min per window and breaths) from ECG/PPG recordings.

    Output CSV: header [bold]time_s,resp[/], time in seconds from the recording start, --out-rate Hz
    (default 25), an empty resp where no source was valid. A recording whose requested outputs all
    exist is skipped unless --overwrite; its outputs are written all-or-nothing. With --out-dir, the
    summary table respsep-summary.tsv (one row per input) is rewritten after every recording. Exit code 4
    when some files failed (the others are still processed); Ctrl-C or SIGTERM stops at once, prints what
    was finished and exits 130.
    """
    from resp_sep.batch import BatchInterrupted, extract_batch
    from resp_sep.channels import parse_overrides
    from resp_sep.outputs import OutputOptions
    from resp_sep.pipeline import ExtractOptions

    opts = ExtractOptions(method=method, signal=signal, model=tuple(model or ()), device=device,
                          channel=parse_overrides(channel) or None, hop_s=hop_s, batch_size=batch_size, threads=threads,
                          engine=engine)
    output = OutputOptions(out_rate=out_rate, window_s=window, fmt=fmt)
    bar = None if (quiet or as_json) else _ExtractProgress()

    def report(info: dict) -> None:
        if bar is not None:
            bar.done(info.get("id"))
        if not as_json:
            _print_result(info, quiet)

    try:
        res = extract_batch(recordings, out=out_file, out_dir=out_dir, rates=rates, breaths=breaths, plot=plot,
                            options=opts, output=output, overwrite=overwrite, jobs=jobs, shard=shard,
                            on_result=report, progress=bar)
    except BatchInterrupted as e:
        res = e.result
    finally:
        if bar is not None:
            bar.close()
    _finish_batch(res, as_json, quiet)


class _ExtractProgress:
    """A progress bar per recording while it runs (percent done, elapsed, ETA); gone when it is done."""

    def __init__(self):
        self.p = None
        self.tasks: dict = {}

    def __call__(self, item, done: int, total: int) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        if self.p is None:
            self.p = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                              TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True)
            self.p.start()
        if item.id not in self.tasks:
            self.tasks[item.id] = self.p.add_task(_shown(Path(item.path).name), total=total or None)
        self.p.update(self.tasks[item.id], completed=done, total=total or None)

    def done(self, ident) -> None:
        task = self.tasks.pop(ident, None)
        if task is not None and self.p is not None:
            self.p.remove_task(task)
        if not self.tasks:
            self.close()

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()
            self.p = None


def _print_result(info: dict, quiet: bool) -> None:
    """One line per recording, starting with its status (ok / skipped / error:), for logs to grep."""
    from resp_sep.batch import recording_id

    ident = info.get("id")
    tag = "" if ident is None or ident == recording_id(info["file"]) else f"{_shown(ident)}: "
    if info["status"] == "failed":
        _fail_line(tag + _shown(info["error"]))
        if info.get("traceback"):
            err.print(info["traceback"].rstrip(), markup=False, highlight=False)
        return
    if quiet:
        return
    if info["status"] == "skipped":
        out.print(f"[dim]skipped[/] {tag}{_shown(info['file'])} -> {_shown(info['out'])} (exists; --overwrite to replace)")
        return
    extra = ""
    if info.get("windows"):
        extra = f", {info['windows_scored']}/{info['windows']} windows of {info['window_s']:g} s scored"
        if info.get("median_bpm") is not None:
            extra += f", {info['median_bpm']:.1f} breaths/min median"
        checks = [f"{info[k]} {k.replace('_', '-')}" for k in ("low_confidence", "disagree") if info.get(k)]
        if checks:
            extra += f", {' and '.join(checks)} window{'s' if sum(info[k] or 0 for k in ('low_confidence', 'disagree')) > 1 else ''}"
    if "method" not in info:  # finished as the batch stopped: no details
        out.print(f"[green]ok[/] {tag}{_shown(info['file'])} -> {_shown(info['out'])} ({_shown(info.get('note', ''))})")
        return
    out.print(f"[green]ok[/] {tag}{_shown(info['file'])} -> {_shown(info['out'])} ({_shown(info['method'])}: "
              f"{info['signal']} '{_shown(info['channel'])}', {info['duration_s'] / 3600:.2f} h, "
              f"{info['seconds']:.1f} s{extra})")
    if info.get("note"):
        out.print(f"   [yellow]note[/] {_shown(info['note'])}")
    for w in info.get("warnings") or []:
        _warn_line(f"{_shown(info['file'])}: {_shown(w)}")


def _finish_batch(res, as_json: bool, quiet: bool) -> None:
    failed = [r for r in res.results if r["status"] == "failed"]
    ok = res.count("ok")
    if as_json:
        _emit_json({"results": res.results, "ok": ok, "failed": len(failed), "skipped": res.count("skipped"),
                    "not_done": res.not_done, "interrupted": res.interrupted, "summary": res.summary,
                    "shard": None if res.shard is None else {"index": res.shard[0], "count": res.shard[1]}})
    elif (res.batch or res.interrupted) and not quiet:
        title = "respsep extract: summary" + (" (interrupted)" if res.interrupted else "")
        if res.shard is not None:
            title += f", shard {res.shard[0] + 1} of {res.shard[1]}"
        t = Table(title=title, title_justify="left")
        for c in ("status", "files"):
            t.add_column(c)
        for st in ("ok", "skipped", "failed"):
            t.add_row(st, str(res.count(st)))
        if res.interrupted:
            t.add_row("not done", str(res.not_done))
        _print_table(t)
        for r in failed:
            out.print(f"  [red]failed[/] {_shown(r['error'])}")
        if res.summary:
            out.print(f"summary table: {_shown(res.summary)}")
        if not res.results:
            out.print("[yellow]no recordings in this shard[/]" if res.shard else "[yellow]no recordings[/]")
    if res.interrupted:
        _interrupted(f"interrupted ({ok} file{'s' if ok != 1 else ''} finished, {res.not_done} not done; "
                     "no partial output left)")
    if res.exit_code:
        raise typer.Exit(res.exit_code)


def _warn_line(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)


# -------------------------------------------------------------------------------------------- eval


@app.command(name="eval")
def eval_cmd(
    recordings: list[str] = typer.Argument(..., help="Recordings with a reference channel (files, folders, globs, sample lists)."),
    ref: str = typer.Option("all", "--ref", help="Reference: thor, nasal or all."),
    method: str = typer.Option(_defaults()[0].method, "--method", help="What 'respsep' is scored as: fusion (default), separator, or source name(s)."),
    signal: str = typer.Option(_defaults()[0].signal, "--signal", "-s", help="auto (ECG and PPG when both are present), ecg, ppg or both."),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="Separator checkpoint(s) (default: the shipped models; ecg=PATH / ppg=PATH)."),
    pred_dir: Optional[str] = typer.Option(None, "--pred-dir", help="Score existing NAME.resp.csv outputs from this folder instead of extracting."),
    baselines: bool = typer.Option(False, "--baselines", help="Also score the fusion, the separator alone and every single source on the same windows."),
    ref_annotations: Optional[str] = typer.Option(None, "--ref-annotations", help="Also use EDF+ annotations whose label contains LABEL as breath events."),
    start: float = typer.Option(0.0, "--start", help="Score from this time (s)."),
    end: Optional[float] = typer.Option(None, "--end", help="Score up to this time (s), e.g. 270 for CinC 2015."),
    window: float = typer.Option(_defaults()[1].window_s, "--window", help="Rate window in s."),
    channel: Optional[list[str]] = typer.Option(None, "--channel", "-c", help="Force a role: ROLE=LABEL (repeatable)."),
    device: str = typer.Option(_defaults()[0].device, "--device", help="auto, cpu or cuda."),
    per_record: bool = typer.Option(False, "--per-record", help="Also print a table of MAE per recording."),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="Write the pooled and per-record results as CSV."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write a Bland-Altman and rate-over-time figure (PNG)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Breaths/min MAE, coverage, Bland-Altman bias/limits and waveform |r| against thor/nasal references."""

    from resp_sep.channels import parse_overrides
    from resp_sep.errors import ModelError
    from resp_sep.evaluate import confidence_curves, evaluate_recording, summarise
    from resp_sep.batch import collect_inputs
    from resp_sep.options import check_eval
    from resp_sep.pipeline import check_method, model_signals
    from resp_sep.writers import check_outputs, output_set

    check_method(method)
    check_eval(ref=ref, signal=signal, device=device, start=start, end=end, window=window, plot=plot, csv_out=csv_out)
    refs = {"thor": ("thor",), "nasal": ("nasal",), "all": ("thor", "nasal")}[ref.lower()]
    signal, device = signal.lower(), device.lower()
    overrides = parse_overrides(channel)
    paths = [it.path for it in collect_inputs(recordings)]
    check_outputs({"--csv": csv_out, "--plot": plot}, inputs=paths)
    if not pred_dir:  # a missing or broken model fails once, up front, with exit 5
        from resp_sep.checkpoint import check_model

        for name, kinds in model_signals(method, signal, tuple(model or ())):
            check_model(name, kinds, device=device)
    results, failed, separators = [], [], {}
    for p in paths:
        pred = None
        if pred_dir:
            from resp_sep.batch import recording_id

            pred = str(Path(pred_dir) / f"{recording_id(p)}.resp.csv")
        try:
            r = evaluate_recording(p, signal=signal, method=method, refs=refs, pred_csv=pred, baselines=baselines,
                                   overrides=overrides, start_s=start, end_s=end, window_s=window,
                                   ref_annotations=ref_annotations, separators=separators, model=tuple(model or ()),
                                   device=device)
            results.append(r)
            if not (quiet or as_json):
                err.print(f"[green]scored[/] {p}", highlight=False)
        except ModelError:
            raise  # the same model serves every file: stop (exit 5) rather than fail them one by one
        except RespSepError as e:
            failed.append({"file": p, "error": str(e), "exit_code": e.exit_code})
            if not as_json:
                _fail_line(str(e))
    rows = summarise(results)
    curves = confidence_curves(results)
    if as_json:
        _emit_json({"pooled": rows, "failed": failed, "n_records": len(results), "confidence": curves})
    elif not quiet:
        _print_eval(rows, per_record, window)
        _print_confidence(curves, window)
    with output_set() as outs:  # --csv and --plot: both or neither
        if csv_out:
            _write_eval_csv(outs.path(csv_out), rows)
        if plot and results:
            from resp_sep.plots import plot_evaluation

            plot_evaluation(outs.path(plot), results)
    if failed:
        codes = {f["exit_code"] for f in failed}
        raise typer.Exit(EXIT_PARTIAL if (results or len(codes) > 1) else codes.pop())


def _print_table(t) -> None:
    """Print a rich table; to a pipe or log (not a terminal, no COLUMNS) at its full width, never cut at 80."""
    if out.is_terminal or os.environ.get("COLUMNS"):
        out.print(t)
    else:  # rich assumes 80 columns without a terminal; a table in a log must not lose its numbers
        Console(file=out.file, highlight=False, soft_wrap=True, width=250).print(t)


def _fmt(v, d: int = 2) -> str:
    import math

    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def _print_eval(rows: list[dict], per_record: bool, window_s: float = 60.0) -> None:
    import math

    f = _fmt

    for ref in sorted({r["ref"] for r in rows}):
        t = Table(title=f"reference: {ref}  (breaths/min, {window_s:g}-s windows)", title_justify="left")
        t.add_column("method", no_wrap=True, min_width=20)
        for c in ("MAE", "MAE common", "windows", "cover", "bias", "95% limits", "|r|", "recs"):
            t.add_column(c, justify="right", no_wrap=True)
        for r in (x for x in rows if x["ref"] == ref):
            name = f"[bold]{r['method']}[/]" if r["method"] in ("respsep", "fusion") else r["method"]
            t.add_row(name, f(r["mae_bpm"]), f(r["mae_common_bpm"]), str(r["n_windows"]),
                      "-" if math.isnan(r["coverage"]) else f"{100 * r['coverage']:.0f}%", f(r["bias_bpm"]),
                      f"{f(r['loa_low'], 1)}..{f(r['loa_high'], 1)}", f(r["abs_r"]), str(r["n_records"]))
        _print_table(t)
        if per_record:
            _print_per_record([x for x in rows if x["ref"] == ref], ref)


def _print_confidence(curves: list[dict], window_s: float = 60.0) -> None:
    """Does the confidence predict the error: MAE of the most confident share of windows, per reference."""
    for c in curves:
        t = Table(title=f"confidence vs error, {c['method']} against {c['ref']}: MAE (breaths/min) of the most "
                        f"confident windows ({window_s:g} s)", title_justify="left")
        t.add_column("", no_wrap=True)
        for p in c["curve"]:
            t.add_column(f"top {100 * p['coverage']:.0f}%", justify="right", no_wrap=True)
        t.add_column("flagged", justify="right", no_wrap=True)
        t.add_column("not flagged", justify="right", no_wrap=True)
        t.add_row("MAE", *[_fmt(p["mae_bpm"]) for p in c["curve"]], _fmt(c["flagged"]["mae_bpm"]),
                  _fmt(c["ok"]["mae_bpm"]))
        t.add_row("windows", *[str(p["n_windows"]) for p in c["curve"]], str(c["flagged"]["n_windows"]),
                  str(c["ok"]["n_windows"]))
        t.add_row("confidence >=", *[_fmt(p["min_confidence"]) for p in c["curve"]], "", "")
        _print_table(t)


def _print_per_record(rows: list[dict], ref: str) -> None:
    """MAE per recording: one row per method (full names), recordings as columns, in as many tables as
    it takes to fit the width (nothing is cut: a method name or a number lost to the width misleads)."""
    import math

    width = out.width if (out.is_terminal or os.environ.get("COLUMNS")) else 250
    recs = sorted({k for x in rows for k in x["per_record"]})
    name_w = max([len("method")] + [len(x["method"]) for x in rows]) + 3
    cols, chunks, used = [], [], name_w + 1
    for rec in recs:
        w = max(len(rec), 5) + 3
        if cols and used + w > width:
            chunks.append(cols)
            cols, used = [], name_w + 1
        cols.append(rec)
        used += w
    if cols:
        chunks.append(cols)
    for i, part in enumerate(chunks):
        title = f"MAE per recording vs {ref} (breaths/min)" + (f", part {i + 1} of {len(chunks)}" if len(chunks) > 1 else "")
        t = Table(title=title, title_justify="left")
        t.add_column("method", no_wrap=True, min_width=name_w - 3)
        for rec in part:
            t.add_column(rec, justify="right", no_wrap=True)
        for x in rows:
            vals = [x["per_record"].get(rec, float("nan")) for rec in part]
            t.add_row(x["method"], *["-" if math.isnan(v) else f"{v:.2f}" for v in vals])
        _print_table(t)


def _write_eval_csv(path: str, rows: list[dict]) -> None:
    import csv
    import io

    from resp_sep.writers import atomic_output

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["scope", "ref", "method", "mae_bpm", "mae_common_bpm", "n_windows", "coverage", "bias_bpm",
                "loa_low", "loa_high", "abs_r"])
    for r in rows:
        w.writerow(["pooled", r["ref"], r["method"], r["mae_bpm"], r["mae_common_bpm"], r["n_windows"], r["coverage"],
                    r["bias_bpm"], r["loa_low"], r["loa_high"], r["abs_r"]])
        for rec, v in r["per_record"].items():
            w.writerow([rec, r["ref"], r["method"], v, "", "", "", "", "", "", ""])
    with atomic_output(path) as tmp:
        tmp.write_text(buf.getvalue())


# -------------------------------------------------------------------------------------------- demo


@app.command()
def demo(
    out_dir: str = typer.Option("respsep-demo", "--out-dir", "-d", help="Folder for the simulated recording, outputs and figure."),
    minutes: float = typer.Option(10.0, "--minutes", "-m", help="Length of the simulated recording."),
    seed: int = typer.Option(7, "--seed", help="Simulation seed."),
    model: Optional[list[str]] = typer.Option(None, "--model", help="Separator checkpoint(s) (default: the shipped models)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Simulate a recording with known breathing, extract it with the default method, score every method, plot it.

    The table puts respsep's default output (the fusion of every source) beside the separator alone
    and each single source, all against the simulation's true respiration, whichever wins.
    """
    from pathlib import Path

    import numpy as np

    from resp_sep.api import extract_file
    from resp_sep.evaluate import demo_scores
    from resp_sep.pipeline import model_signals
    from resp_sep.simulate import simulate as run_sim
    from resp_sep.simulate import write_simulation

    from resp_sep.checkpoint import check_model
    from resp_sep.options import check_float, check_seed
    from resp_sep.writers import check_folder, make_folder, remove_if_empty

    check_float("--minutes", minutes, 61.44 / 60, 24 * 60, unit="min")
    check_seed(seed)
    d = Path(out_dir)
    check_folder(d)
    for name, kinds in model_signals("fusion", "auto", tuple(model or ())):
        check_model(name, kinds)
    rec = d / f"simulated-{seed}.edf"
    csv, png, rates = d / "resp.csv", d / "resp.png", d / "rates.csv"
    created = make_folder(d)
    new = [x for x in (rec, csv, png, rates) if not x.exists()]
    models = tuple(model or ())
    try:
        sim = run_sim(duration_s=minutes * 60, fs=256, seed=seed)
        write_simulation(sim, rec)
        separators: dict = {}
        res = extract_file(str(rec), model=models, separators=separators)
        res.save(str(csv), rates=str(rates), plot=str(png))
        info = res.info
        rows = demo_scores(sim, str(rec), separators=separators, model=models)
    except BaseException:  # all or nothing: remove what this run wrote
        for x in new:
            x.unlink(missing_ok=True)
        if created is not None:
            remove_if_empty(d, created)
        raise
    if as_json:
        _emit_json({"recording": str(rec), "resp_csv": str(csv), "rates_csv": str(rates), "plot": str(png),
                    "method": info["method"], "inputs": info["signal"], "sources": info["sources"],
                    "model": info["model"], "scores": rows})
        return
    t = Table(title=f"respsep demo: {minutes:g} min simulated ECG + PPG (seed {seed}), 60-s windows vs the true "
                    "respiration", title_justify="left")
    for c, j in (("method", "left"), ("MAE (breaths/min)", "right"), ("windows scored", "right"), ("|r| waveform", "right")):
        t.add_column(c, justify=j)
    for r in rows:
        label = "respsep (default: fusion)" if r["method"] == "respsep" else r["method"]
        t.add_row(f"[bold]{label}[/]" if r["method"] == "respsep" else label,
                  f"{r['mae_bpm']:.2f}" if np.isfinite(r["mae_bpm"]) else "-",
                  r["coverage"], f"{r['abs_r']:.2f}" if np.isfinite(r.get("abs_r", np.nan)) else "-")
    _print_table(t)
    best = min((r for r in rows if np.isfinite(r["mae_bpm"])), key=lambda r: r["mae_bpm"], default=None)
    if best is not None and best["method"] not in ("respsep", "fusion") \
            and round(best["mae_bpm"], 2) < round(rows[0]["mae_bpm"], 2):
        out.print(f"[yellow]on this recording {best['method']} beats the default[/] "
                  f"({best['mae_bpm']:.2f} vs {rows[0]['mae_bpm']:.2f} breaths/min)")
    weights = ", ".join(f"{k} {v:.2f}" for k, v in sorted(info["sources"].items(), key=lambda kv: -kv[1]))
    out.print(f"recording: {rec}\nrespiration: {csv} (time_s,resp at 25 Hz)\nrates: {rates}\nfigure: {png}\n"
              f"mean fusion weights: {weights}\nmodels: "
              + (info["model"] or "none (the default fusion uses no separator; --model adds one)"))


# ------------------------------------------------------------------------------------------- entry


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app and turn every failure into one line and an exit code."""
    from resp_sep.interrupts import termination_as_interrupt

    debug = os.environ.get("RESPSEP_DEBUG") == "1" or "--debug" in (argv or sys.argv[1:])
    try:
        _STATE["interrupt_reported"] = False
        with termination_as_interrupt():  # SIGTERM (a scheduler's kill) stops like Ctrl-C: cleaned up, exit 130
            rv = app(args=argv, prog_name="respsep", standalone_mode=False)
        code = rv if isinstance(rv, int) else EXIT_OK
        if code == EXIT_INTERRUPTED and not _STATE["interrupt_reported"]:
            _interrupted()  # typer turns Ctrl-C into a silent exit code 130: say it
    except RespSepError as e:
        _fail_line(str(e))
        code = e.exit_code
    except KeyboardInterrupt:
        _interrupted()
        code = EXIT_INTERRUPTED
    except MemoryError:
        _fail_line("out of memory")
        code = EXIT_INTERNAL
    except Exception as e:
        name = type(e).__name__
        if name == "Exit" and hasattr(e, "exit_code"):  # typer/click Exit (vendored or not)
            if int(e.exit_code or 0) == EXIT_INTERRUPTED and not _STATE["interrupt_reported"]:
                _interrupted()
            return int(e.exit_code or 0)
        if name == "Abort":
            _interrupted()
            return EXIT_INTERRUPTED
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            # usage errors (Click/Typer): keep the message on one line, exit 2
            _fail_line(" ".join(e.format_message().split()))
            return int(e.exit_code)
        # anything else is a bug: one line unless --debug
        if debug or os.environ.get("RESPSEP_DEBUG") == "1":
            raise
        _fail_line(f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} (rerun with --debug)")
        code = EXIT_INTERNAL
    return int(code or 0)


def _interrupted(message: str = "interrupted (no partial output left)") -> None:
    from resp_sep.writers import remove_live_temps

    remove_live_temps()  # normally done by the writers' own clean-up; this is the safety net
    _STATE["interrupt_reported"] = True
    _fail_line(message)


#: per-invocation flags of :func:`main`
_STATE = {"interrupt_reported": False}


def run() -> None:  # pragma: no cover - used by ``python -m resp_sep``
    code = main()
    if code == EXIT_INTERRUPTED:
        # Stop means stop: everything is cleaned up and reported; skip the interpreter's teardown,
        # which takes about a second once torch is loaded.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe must not turn an interrupt into a traceback
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
