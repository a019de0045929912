"""Checking command-line values before any work is done.

Every bad value is a :class:`~resp_sep.errors.UsageError` (exit code 2) with a one-line message
naming the option, raised before a recording is read, a model loaded or an output created: a
usage mistake must never show up later as a per-file failure, an internal error (exit 1) or a
half-done run. The CLI calls one ``check_*`` function per command; the library functions can use
the small helpers too; ``extract``'s settings are checked by
:meth:`resp_sep.pipeline.ExtractOptions.check` and :meth:`resp_sep.outputs.OutputOptions.check`
(called by the API and :func:`resp_sep.batch.extract_batch`).

Output *paths* are checked by :func:`resp_sep.writers.check_outputs` (exit 6 when a path cannot
be written, 2 when two outputs collide or an output would replace an input).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from resp_sep.errors import UsageError

#: inputs ``extract``/``eval`` use (``auto``: ECG and PPG when both are present; :mod:`resp_sep.pipeline`)
SIGNALS = ("auto", "ecg", "ppg", "both")
#: output formats of ``respsep extract``
EXTRACT_FORMATS = ("csv", "edf")
#: suffixes that are certainly not CSV text (a CSV written under such a name would mislead)
NOT_CSV_SUFFIXES = {".edf", ".bdf", ".rec", ".hea", ".dat", ".mat", ".pt", ".png", ".pdf", ".svg", ".jpg",
                    ".jpeg", ".tif", ".tiff", ".webp", ".eps", ".ps", ".npy", ".npz", ".gz", ".zip"}


def check_choice(option: str, value: str, choices: Sequence[str]) -> str:
    """``value`` when it is one of ``choices`` (case-insensitive), lower-cased."""
    v = str(value).strip().lower()
    if not isinstance(value, str) or v not in choices:
        raise UsageError(f"{option} must be {_or(choices)} (got '{value}')")
    return v


def check_int(option: str, value: int | None, lo: int | None = None, hi: int | None = None) -> int | None:
    """``value`` when it is ``None`` or an integer within ``[lo, hi]``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{option} must be an integer (got {value!r})")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise UsageError(f"{option} must be {_range(lo, hi)} (got {value})")
    return int(value)


def check_float(option: str, value: float | None, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, unit: str = "") -> float | None:
    """``value`` when it is ``None`` or a finite number within ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{option} must be a number (got {value!r})")
    v = float(value)
    bad = not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) \
        or (hi is not None and v > hi)
    if bad:
        rng = (f"> {lo:g}" if hi is None else f"within ({lo:g}, {hi:g}]") if lo_open else _range(lo, hi)
        raise UsageError(f"{option} must be {rng}{' ' + unit if unit else ''} (got {value:g})")
    return v


def check_device(device: str | None, option: str = "--device") -> str | None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``cuda`` without a CUDA device is refused too."""
    if device is None:
        return None
    d = str(device).strip().lower()
    if not (d in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", d)):
        raise UsageError(f"{option} must be auto, cpu, cuda or cuda:N (got '{device}')")
    if d.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"{option} {d} requested but no CUDA device is available")
        if ":" in d and int(d.split(":")[1]) >= torch.cuda.device_count():
            raise UsageError(f"{option} {d}: only {torch.cuda.device_count()} CUDA device(s)")
    return d


def check_plot_path(path: str | None, option: str = "--plot") -> str | None:
    """A figure name whose suffix matplotlib can write (``.png``, ``.pdf``, ``.svg``, ...)."""
    if path is None:
        return None
    suffix = Path(path).suffix.lower().lstrip(".")
    from matplotlib.backend_bases import FigureCanvasBase

    known = sorted(FigureCanvasBase.get_supported_filetypes())
    if suffix not in known:
        raise UsageError(f"{option} {path}: unsupported figure type '.{suffix}' "
                         f"(use one of {', '.join('.' + k for k in known)})" if suffix else
                         f"{option} {path}: give the figure a suffix such as .png or .pdf")
    return path


def check_csv_path(path: str | None, option: str) -> str | None:
    """A CSV output name that does not pretend to be something else (``--rates r.edf``)."""
    if path is not None and Path(path).suffix.lower() in NOT_CSV_SUFFIXES:
        raise UsageError(f"{option} {path}: this output is CSV text; give it a .csv name")
    return path


def output_format(fmt: str | None, out: str | None) -> str:
    """The ``extract`` output format: ``--format`` when given, else from the ``--out`` suffix.

    ``--out x.edf`` alone means EDF; ``--format csv --out x.edf`` is a contradiction (refused
    rather than writing CSV text into a ``.edf`` file); other suffixes are CSV.
    """
    suffix = Path(out).suffix.lower() if out else ""
    if fmt is None:
        return "edf" if suffix == ".edf" else "csv"
    fmt = check_choice("--format", fmt, EXTRACT_FORMATS)
    if out is not None:
        if fmt == "csv" and suffix in NOT_CSV_SUFFIXES:
            raise UsageError(f"--out {out}: --format csv writes CSV text; give it a .csv name or use --format edf")
        if fmt == "edf" and suffix != ".edf":
            raise UsageError(f"--out {out}: --format edf writes EDF+; give it a .edf name")
    return fmt


def check_eval(*, ref: str, signal: str, device: str, start: float, end: float | None, window: float,
               plot: str | None, csv_out: str | None) -> None:
    """Validate the ``eval`` options."""
    check_choice("--ref", ref, ("thor", "nasal", "all"))
    check_choice("--signal", signal, SIGNALS)
    check_device(device)
    check_float("--start", start, 0, unit="s")
    if end is not None:
        check_float("--end", end, start, lo_open=True, unit="s")
    check_float("--window", window, 10, 3600, unit="s")
    check_plot_path(plot)
    check_csv_path(csv_out, "--csv")


def check_train(cfg) -> None:
    """Validate a resolved :class:`~resp_sep.train.TrainConfig` (command line and TOML alike)."""
    check_choice("--signal", cfg.signal, ("ecg", "ppg"))
    check_device(cfg.device)
    check_int("--epochs", cfg.epochs, 1)
    check_int("--batch-size", cfg.batch_size, 1, 1 << 20)
    check_float("--lr", cfg.lr, 0, 10, lo_open=True)
    check_float("--hop", cfg.hop_s, 0, 61.44, lo_open=True, unit="s")
    check_float("--val-fraction", cfg.val_fraction, 0, 0.9)
    check_choice("--val-ref", cfg.val_ref, ("thor", "nasal", "none"))
    check_int("--simulate", cfg.simulate, 0, 100_000)
    check_float("simulate_minutes", cfg.simulate_minutes, 61.44 / 60, 24 * 60, unit="min")
    check_int("--max-steps", cfg.max_steps_per_epoch, 0)
    check_int("--seed", cfg.seed, 0, 2**32 - 1)
    check_int("--threads", cfg.threads, 0, 1024)
    check_choice("--lr-schedule", cfg.lr_schedule, ("constant", "cosine", "step", "onecycle"))
    for name, lo, hi in (("lr_gamma", 0, 1), ("lr_warmup_frac", 0, 1), ("lr_min_frac", 0, 1)):
        if hasattr(cfg, name):
            check_float(name, getattr(cfg, name), lo, hi)
    for name in ("lr_step_every", "val_every"):
        if hasattr(cfg, name):
            check_int(name.replace("_", "-") if name == "val_every" else name, getattr(cfg, name), 0)
    if hasattr(cfg, "time_budget_min"):
        check_float("--time-budget", cfg.time_budget_min, 0, unit="min")
    if getattr(cfg, "init", "") and not Path(cfg.init).exists():
        from resp_sep.errors import ModelError

        raise ModelError("--init: no such checkpoint file", cfg.init)
    check_float("grad_clip", cfg.grad_clip, 0)
    check_float("weight_decay", cfg.weight_decay, 0)
    check_float("flip_prob", cfg.flip_prob, 0, 1)
    check_int("max_val_segments", cfg.max_val_segments, 1)
    if hasattr(cfg, "clip_percentile"):
        check_float("clip_percentile", cfg.clip_percentile, 0, 10, unit="%")
        check_int("bn_recalibrate", cfg.bn_recalibrate, 0, 10_000)
    try:
        cfg.model_config(), cfg.loss_weights()
    except (TypeError, ValueError) as e:
        raise UsageError(f"invalid model or loss settings: {' '.join(str(e).split())}") from None


def check_seed(seed: int, option: str = "--seed") -> int:
    """Seeds are 0..2**32-1 (numpy's range)."""
    return check_int(option, seed, 0, 2**32 - 1)


def _or(choices: Iterable[str]) -> str:
    c = list(choices)
    return ", ".join(c[:-1]) + f" or {c[-1]}" if len(c) > 1 else c[0]


def _range(lo, hi) -> str:
    def f(v) -> str:
        return str(v) if isinstance(v, int) else f"{v:g}"

    if lo is not None and hi is not None:
        return f"within {f(lo)}..{f(hi)}"
    return f">= {f(lo)}" if lo is not None else f"<= {f(hi)}"
