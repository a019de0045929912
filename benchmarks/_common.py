"""Shared helpers of the performance benchmarks (``benchmarks/bench_*.py``; docs/performance.md).

* :func:`night_ecg`: a simulated ECG night at 256 Hz, simulated once and cached as ``.npy`` in
  :data:`CACHE_DIR` (``$RESPSEP_BENCH_CACHE``, default ``/tmp/respsep-bench``).
* :func:`random_model`: a :class:`~resp_sep.model.MultiEncoderAE` of a named width with random
  weights (speed does not depend on the weights).
* :func:`median_time`: median wall time of N calls.
* :func:`run_child`: run one measurement in a fresh Python process and return what it printed
  plus its peak resident memory (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, read by a
  small launcher whose only child it is; see :data:`LAUNCHER`).
* :func:`print_table`, :func:`machine_info`: rich tables and the conditions of a run (load!).

The scripts import this module as ``_common`` (run them as ``python benchmarks/bench_X.py``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the scripts run from a checkout, installed or not
    sys.path.insert(0, str(REPO))

#: where simulated nights are cached
CACHE_DIR = Path(os.environ.get("RESPSEP_BENCH_CACHE") or Path(tempfile.gettempdir()) / "respsep-bench")
#: sampling rate of the simulated ECG nights (Hz)
NIGHT_FS = 256.0
#: encoder channel schedules: the published widths and the half widths of the shipped CPU models
MODEL_CONFIGS = {
    "full": [32, 32, 64, 64, 128, 128, 256, 256],
    "half": [16, 16, 32, 32, 64, 64, 128, 128],
}
#: marker of the result line a child process prints
RESULT_MARK = "@@RESULT@@ "
RSS_MARK = "@@RSS_KIB@@"


# ------------------------------------------------------------------------------------------ data


def night_path(hours: float, fs: float = NIGHT_FS, seed: int = 0) -> Path:
    return CACHE_DIR / f"ecg-{hours:g}h-{fs:g}hz-seed{seed}.npy"


def night_ecg(hours: float = 8.0, fs: float = NIGHT_FS, seed: int = 0, log: Callable = print) -> np.ndarray:
    """ECG of a simulated night (float32, ``hours * 3600 * fs`` samples), cached as ``.npy``."""
    path = night_path(hours, fs, seed)
    if path.exists():
        return np.load(path)
    from resp_sep.simulate import simulate

    t0 = time.perf_counter()
    ecg = simulate(duration_s=hours * 3600, fs=fs, seed=seed).ecg.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.npy")
    np.save(tmp, ecg)
    os.replace(tmp, path)
    log(f"simulated a {hours:g}-h ECG night at {fs:g} Hz in {time.perf_counter() - t0:.1f} s -> {path}")
    return ecg


# ----------------------------------------------------------------------------------------- model


def model_config(name: str):
    """``ModelConfig`` of ``"full"`` (published widths) or ``"half"`` (shipped CPU models)."""
    from resp_sep.model import ModelConfig

    if name not in MODEL_CONFIGS:
        raise SystemExit(f"--model-config must be one of {', '.join(MODEL_CONFIGS)}")
    return ModelConfig(n_encoders=8, channels=list(MODEL_CONFIGS[name]), hidden=64, kernel_size=7)


def random_model(name: str = "half", seed: int = 0, device: str = "cpu", train: bool = False):
    """A ``MultiEncoderAE`` of config ``name`` with random weights (eval mode unless ``train``)."""
    import torch

    from resp_sep.model import MultiEncoderAE

    torch.manual_seed(seed)
    m = MultiEncoderAE(model_config(name)).to(device)
    return m.train(train)


def segment_flops(model, fn: Callable, *args) -> float:
    """FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` for ``fn(*args)``.

    Counts convolutions and matrix products (forward and, when ``fn`` calls backward, backward);
    element-wise work (norms, activations, pooling) is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn(*args)
    return float(fc.get_total_flops())


def matmul_peak_gflops(threads: int, dtype: str = "float32", n: int = 2048, repeats: int = 5) -> float:
    """The machine's measured compute peak: best GFLOP/s of an ``n x n`` matrix product in torch
    (``dtype`` float32 or bfloat16) on ``threads`` CPU threads - the ceiling the model could reach."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    a, b = torch.rand(n, n, dtype=dt), torch.rand(n, n, dtype=dt)
    best = float("inf")
    try:
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return 2 * n**3 / best / 1e9


# ---------------------------------------------------------------------------------------- timing


def median_time(fn: Callable[[], object], repeats: int = 3, warmup: int = 0, sync: Callable | None = None
                ) -> tuple[float, list[float]]:
    """Median wall time (s) of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001  # pragma: no cover
        return False


# ------------------------------------------------------------------------------- child processes


#: Runs the measured child and reports ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after reaping it. A
#: separate small launcher, because Linux carries the spawning process's peak RSS over into the
#: child's ``ru_maxrss`` at exec (``signal->maxrss``): children spawned directly by a benchmark
#: script that has loaded torch or simulated a night would report at least that script's peak.
LAUNCHER = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:])\n"
            "print('" + RSS_MARK + "', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)\n"
            "sys.exit(r.returncode)\n")


def run_child(script: str | Path, spec: dict) -> tuple[dict, float]:
    """Run ``python script --child JSON`` in a fresh process and measure its peak memory.

    The child does one measurement and ends by printing ``RESULT_MARK + json`` (see
    :func:`child_result`); its other output is passed through.

    Returns
    -------
    result : dict
        What the child reported (``{"error": ...}`` when it failed).
    peak_rss_mb : float
        The child's peak resident set size in MiB: ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``
        read by a small launcher process (:data:`LAUNCHER`) whose only child it is.
    """
    cmd = [sys.executable, "-S", "-c", LAUNCHER, sys.executable, str(script), "--child", json.dumps(spec)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines, last, peak = [], "", float("nan")
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(RESULT_MARK):
            lines.append(line[len(RESULT_MARK):])
        elif line.startswith(RSS_MARK):
            peak = int(line.split()[1]) / 1024.0  # Linux: KiB
        elif line.strip():
            print("   " + line.rstrip())
            last = line.strip()
    proc.wait()
    if proc.returncode != 0 or not lines:
        return {"error": f"child exited with {proc.returncode}: {last[:80]}"}, peak
    return json.loads(lines[-1]), peak


def child_result(result: dict) -> None:
    """Print the result line that :func:`run_child` reads (adds ``vmhwm_mb``, the process's own
    peak RSS from ``/proc/self/status``, as a cross-check of ``ru_maxrss``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                result = {**result, "vmhwm_mb": int(line.split()[1]) / 1024.0}
    except OSError:  # pragma: no cover - not Linux
        pass
    print(RESULT_MARK + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------------- output


def load_average() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown CPU"


def machine_info(threads: int | None = None) -> dict:
    """Conditions of a run: CPU, cores, torch threads, load average, GPU."""
    import torch

    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": threads if threads is not None else torch.get_num_threads(),
            "load_avg_1_5_15": load_average(), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_info(info: dict, title: str = "machine") -> None:
    """Print the run conditions, with a warning when the machine is already busy."""
    from rich.console import Console
    from rich.markup import escape

    con = Console()
    con.print(f"[bold]{title}[/]: " + escape(" · ".join(f"{k} {v}" for k, v in info.items())))
    try:
        load1 = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return
    cores = os.cpu_count() or 1
    if load1 > 0.5 * cores:
        con.print(f"[yellow]warning[/]: load average {load1:.1f} on {cores} cores before starting: other "
                  "processes compete for the CPU and the timings will be slow and noisy; with more than "
                  "one torch thread much worse (each parallel region waits for its descheduled threads). "
                  "Rerun on a quiet machine, or compare methods with --threads 1.")


def print_table(title: str, columns: list[str], rows: list[list], caption: str | None = None) -> None:
    """A rich table; numbers are right-aligned, ``None`` shows as ``-``."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title, caption=escape(caption or ""), caption_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*["-" if v is None else escape(str(v)) for v in r])
    Console(width=max(120, len(columns) * 14)).print(t)


def fmt(x: float | None, digits: int = 3) -> str | None:
    """Compact number: 3 significant digits (``None`` stays ``None``)."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return None
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{max(0, digits - 1 - int(np.floor(np.log10(a))))}f}"


def save_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))
        print(f"results written to {path}")


def parse_args_or_run_child(ap, argv, child: Callable[[dict], None]):
    """Add the shared ``--json``/``--child`` options and parse; in a child process run ``child``.

    Returns the parsed arguments, or None when this process was a measured child (already run).
    """
    import argparse

    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(json.loads(a.child))
        return None
    return a
