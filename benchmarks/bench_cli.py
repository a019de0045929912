"""Whole-process benchmark: ``respsep extract`` as a user runs it, against the NeuroKit2 pipeline.

What a sleep lab or a Holter user feels is the whole process: start-up (imports), reading the
recording, extraction, writing the output, and its peak memory. This script measures exactly that:

1. It builds PSG-like nights of ``--hours`` (default 8 and 24 h) of several kinds
   (``--nights``, default all three; ``benchmarks/nights.py``): ``marsh``, the real MARSH recordings
   of ``../shared/data/marsh-edf`` (ECG, PPG, thoracic and nasal channels of all 21 subjects at
   256 Hz, concatenated and tiled); ``sim``, respsep's own simulated night; ``noisy``, a simulated
   night with three times the noise, many artefacts and ectopic beats. Each has 12 channels at
   256 Hz in 1-s data records (8 EEG/EOG/EMG/leg fillers), so that reading only the channels used
   matters (8 h: 177 MB as EDF). ``--formats`` also writes the simulated nights as BDF or WFDB.
   Built once, cached in ``$RESPSEP_BENCH_CACHE`` (default ``/tmp/respsep-bench``).
2. For each repeat it runs, as fresh child processes one after the other (paired run by run):
   the NeuroKit2 pipeline (``benchmarks/nk_edr_pipeline.py``: pyedflib read of the ECG ->
   ``ecg_clean`` -> ``ecg_peaks`` -> ``ecg_rate`` -> ``ecg_rsp`` -> CSV of the same 25-Hz rows),
   then the console command ``respsep extract night.edf --out r.csv`` for each ``--methods``
   entry (``default``: no ``--method`` flag; any other name is passed as ``--method NAME``).
   Each child is started by a tiny launcher (``python -S``) that reaps it with ``os.wait4``: wall
   time, CPU time (user + system) and peak RSS (``ru_maxrss``) of that child alone.
3. It measures start-up alone: ``respsep --version``, ``--help``, ``info`` on the 8-h file,
   ``extract --help``, and the imports an extraction needs.

Medians over ``--repeats`` (default 3) and the median of the per-repeat ratios to the NeuroKit2
run of the same repeat. When the installed ``respsep extract`` has no ``--method`` option yet,
the default is benchmarked and labelled ``separator`` (other methods are skipped).

Run from the repository root (the virtual environment's python, so that ``respsep`` is its
console script)::

    python benchmarks/bench_cli.py                           # 3 nights x 8 and 24 h, 3 repeats, 2 threads
    python benchmarks/bench_cli.py --nights sim --formats edf,bdf,wfdb --hours 8 --methods default
    python benchmarks/bench_cli.py --hours 8 --repeats 5
    python benchmarks/bench_cli.py --methods default,separator,ecg_r_amplitude
    python benchmarks/bench_cli.py --hours 8 --methods separator,separator:--engine=torch,separator:--hop=61.44
    python benchmarks/bench_cli.py --quick                   # 1 h, 1 repeat (smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

DATA = C.REPO.parent / "shared" / "data" / "marsh-edf"
PSG_FS = 256
#: channels of the PSG-like file: (label, unit, MARSH source, shift in s). The ECG is not first,
#: as in a real PSG montage; fillers are shifted copies of real signals.
PSG_CHANNELS = [
    ("EEG C3-A2", "uV", "Thorax IP", 600), ("EEG C4-A1", "uV", "Nasal Therm", 1200),
    ("EEG O1-A2", "uV", "Pleth", 1800), ("EOG L", "uV", "ECG", 2400), ("EOG R", "uV", "Thorax IP", 3000),
    ("EMG Chin", "uV", "ECG", 3600), ("ECG", "mV", "ECG", 0), ("Thorax", "a.u.", "Thorax IP", 0),
    ("Nasal Therm", "a.u.", "Nasal Therm", 0), ("Pleth", "a.u.", "Pleth", 0),
    ("Leg L", "uV", "Pleth", 4200), ("Leg R", "uV", "Nasal Therm", 4800),
]
NK_SCRIPT = Path(__file__).resolve().parent / "nk_edr_pipeline.py"

#: measures one child: wall, CPU and peak RSS via os.wait4 (a tiny launcher, so that the child's
#: ru_maxrss does not inherit the benchmark's own peak at exec, see _common.LAUNCHER)
LAUNCHER = r"""
import json, os, sys, time
log = sys.argv[1]
argv = sys.argv[2:]
acts = [(os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2)]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=acts)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "user_s": ru.ru_utime,
                  "sys_s": ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024.0,
                  "code": os.waitstatus_to_exitcode(status)}))
"""


# ------------------------------------------------------------------------------------- recordings


def _marsh_signals(log=print) -> dict[str, np.ndarray]:
    """The four MARSH signals of every subject at 256 Hz, concatenated (subject by subject)."""
    import pyedflib
    from scipy.signal import resample_poly

    files = sorted(DATA.glob("*.edf"))
    if not files:
        raise SystemExit(f"no MARSH recordings in {DATA} (the benchmark builds its nights from them)")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("ECG", "Pleth", "Thorax IP", "Nasal Therm")}
    for p in files:
        with pyedflib.EdfReader(str(p)) as f:
            labels = [s.strip() for s in f.getSignalLabels()]
            sigs = {}
            for k in parts:
                i = labels.index(k)
                fs = f.getSampleFrequency(i)
                r = Fraction(PSG_FS / fs).limit_denominator(1000)
                sigs[k] = resample_poly(f.readSignal(i), r.numerator, r.denominator, padtype="line")
        n = min(len(v) for v in sigs.values())
        for k in parts:
            parts[k].append(sigs[k][:n])
    out = {k: np.concatenate(v) for k, v in parts.items()}
    log(f"MARSH: {len(files)} subjects, {len(out['ECG']) / PSG_FS / 3600:.2f} h at {PSG_FS} Hz per channel")
    return out


def _edf_field(s: str, n: int) -> bytes:
    return s[:n].ljust(n).encode("ascii")


def psg_path(hours: float) -> Path:
    return C.CACHE_DIR / f"psg-{hours:g}h-{PSG_FS}hz-12ch.edf"


def build_psg(hours: float, log=print) -> Path:
    """A 12-channel 256-Hz EDF of ``hours`` built from MARSH (cached; see the module docstring)."""
    from resp_sep.writers import _edf_bound

    path = psg_path(hours)
    if path.exists():
        return path
    t0 = time.perf_counter()
    base = _marsh_signals(log)
    n_rec = round(hours * 3600)
    ns = len(PSG_CHANNELS)
    digital, heads = [], []
    for label, unit, src, shift in PSG_CHANNELS:
        x = base[src]
        lo, hi = float(np.min(x)), float(np.max(x))
        span = hi - lo
        lo, hi = _edf_bound(lo - 0.01 * span, up=False), _edf_bound(hi + 0.01 * span, up=True)
        d = np.rint((x - lo) * (65535.0 / (hi - lo)) - 32768).clip(-32768, 32767).astype(np.int16)
        digital.append(np.roll(d, -int(shift * PSG_FS)))
        heads.append((label, unit, lo, hi))
    hdr = (_edf_field("0", 8) + _edf_field("X X X X", 80)
           + _edf_field("Startdate 01-JAN-2026 X respsep-benchmark X", 80) + _edf_field("01.01.26", 8)
           + _edf_field("22.00.00", 8) + _edf_field(str(256 * (ns + 1)), 8) + _edf_field("", 44)
           + _edf_field(str(n_rec), 8) + _edf_field("1", 8) + _edf_field(str(ns), 4))
    num = lambda v: _edf_field(f"{v:.10f}".rstrip("0").rstrip("."), 8)
    hdr += b"".join(_edf_field(h[0], 16) for h in heads)
    hdr += b"".join(_edf_field("", 80) for _ in heads)
    hdr += b"".join(_edf_field(h[1], 8) for h in heads)
    hdr += b"".join(num(h[2]) for h in heads) + b"".join(num(h[3]) for h in heads)
    hdr += b"".join(_edf_field("-32768", 8) for _ in heads) + b"".join(_edf_field("32767", 8) for _ in heads)
    hdr += b"".join(_edf_field("", 80) for _ in heads)
    hdr += b"".join(_edf_field(str(PSG_FS), 8) for _ in heads)
    hdr += b"".join(_edf_field("", 32) for _ in heads)
    assert len(hdr) == 256 * (ns + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    step = 600  # data records per write
    with open(tmp, "wb") as fh:
        fh.write(hdr)
        for r0 in range(0, n_rec, step):
            r1 = min(n_rec, r0 + step)
            block = np.empty((r1 - r0, ns, PSG_FS), dtype="<i2")
            for c, d in enumerate(digital):
                idx = np.arange(r0 * PSG_FS, r1 * PSG_FS) % len(d)
                block[:, c, :] = d[idx].reshape(r1 - r0, PSG_FS)
            fh.write(block.tobytes())
    os.replace(tmp, path)
    log(f"built {path} ({hours:g} h, {ns} channels at {PSG_FS} Hz, {path.stat().st_size / 1e6:.0f} MB) "
        f"in {time.perf_counter() - t0:.1f} s")
    return path


# ----------------------------------------------------------------------------------------- running


def respsep_exe() -> str:
    exe = Path(sys.executable).parent / "respsep"
    if not exe.exists():
        raise SystemExit(f"no respsep console script beside {sys.executable}: run this with the venv's python")
    return str(exe)


def run_measured(argv: list[str], env: dict | None = None) -> dict:
    """Run ``argv`` as a fresh child via the launcher; wall/CPU seconds, peak RSS MB, exit code."""
    with tempfile.NamedTemporaryFile("r", suffix=".log", delete=False) as lf:
        log = lf.name
    try:
        r = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, log, *argv], capture_output=True, text=True, check=False,
                           env=env or os.environ.copy())
        if r.returncode != 0:
            raise RuntimeError(f"launcher failed: {r.stderr.strip()[-300:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["log"] = Path(log).read_text(errors="replace")[-400:]
    finally:
        os.unlink(log)
    return res


def has_method_option() -> bool:
    r = subprocess.run([respsep_exe(), "extract", "--help"], capture_output=True, text=True, check=False)
    return "--method" in r.stdout


def startup(edf: Path, repeats: int) -> list[dict]:
    """Start-up alone: commands that do no extraction, and the imports an extraction needs."""
    exe = respsep_exe()
    py = sys.executable
    cases = [
        ("respsep --version", [exe, "--version"]),
        ("respsep --help", [exe, "--help"]),
        ("respsep extract --help", [exe, "extract", "--help"]),
        ("respsep info (8-h PSG file)", [exe, "info", str(edf)]),
        ("python: import resp_sep.separate (torch, extraction)", [py, "-c", "import resp_sep.separate"]),
        ("python: import torch", [py, "-c", "import torch"]),
        ("python: import scipy.signal", [py, "-c", "import scipy.signal"]),
        ("python: import neurokit2", [py, "-c", "import neurokit2"]),
        ("python: (nothing)", [py, "-c", "pass"]),
    ]
    out = []
    for name, argv in cases:
        runs = [run_measured(argv) for _ in range(repeats)]
        out.append({"name": name, "wall_s": statistics.median(r["wall_s"] for r in runs),
                    "cpu_s": statistics.median(r["cpu_s"] for r in runs),
                    "rss_mb": statistics.median(r["rss_mb"] for r in runs),
                    "ok": all(r["code"] == 0 for r in runs)})
        print(f"   {name}: {out[-1]['wall_s']:.2f} s, {out[-1]['rss_mb']:.0f} MB", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[8, 24], help="recording lengths (default 8 24)")
    ap.add_argument("--nights", default="marsh,sim,noisy", help="kinds of night (default marsh,sim,noisy)")
    ap.add_argument("--formats", default="edf", help="formats of the simulated nights: edf,bdf,wfdb (default edf)")
    ap.add_argument("--repeats", type=int, default=3, help="paired runs per length (median; default 3)")
    ap.add_argument("--methods", default="default,separator,ecg_r_amplitude",
                    help="comma-separated: 'default' (no --method flag) and/or --method names, each optionally "
                         "followed by extract options after colons, e.g. separator:--engine=torch:--hop=61.44 "
                         "(default: default,separator,ecg_r_amplitude)")
    ap.add_argument("--threads", type=int, default=2, help="respsep --threads (default 2)")
    ap.add_argument("--startup-repeats", type=int, default=5, help="runs per start-up command (default 5)")
    ap.add_argument("--no-startup", action="store_true", help="skip the start-up table")
    ap.add_argument("--no-neurokit", action="store_true", help="skip the NeuroKit2 pipeline (no ratios)")
    ap.add_argument("--quick", action="store_true", help="1 h, 1 repeat, 1 start-up run (smoke run)")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    a = ap.parse_args(argv)
    if a.quick:
        a.hours, a.repeats, a.startup_repeats = [1.0], 1, 1
    import nights as N
    exe = respsep_exe()
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    if not has_method_option():
        print("note: this respsep has no --method option yet: benchmarking its default as 'separator'")
        methods = ["separator(default)"]
    kinds = [k.strip() for k in a.nights.split(",") if k.strip()]
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    paths = {}  # (night label, hours) -> file
    for kind in kinds:
        for fmt in (["edf"] if kind == "marsh" else formats):
            for h in a.hours:
                paths[(f"{kind}" + ("" if fmt == "edf" else f" {fmt}"), h)] = N.build_night(kind, h, fmt)
    nights = list(dict.fromkeys(k for k, _ in paths))
    load_before = C.load_average()
    print(f"machine: {C.cpu_name()}, {os.cpu_count()} cores, load average {load_before}", flush=True)
    results: dict = {"startup": [], "runs": []}
    if not a.no_startup:
        print("-> start-up", flush=True)
        results["startup"] = startup(next(iter(paths.values())), a.startup_repeats)
    env = os.environ.copy()
    with tempfile.TemporaryDirectory(prefix="respsep-bench-cli-") as tmp:
        for night, h in paths:
            edf = paths[(night, h)]
            for rep in range(a.repeats):
                plan = ([] if a.no_neurokit else [("neurokit2", [sys.executable, str(NK_SCRIPT), str(edf),
                                                                 f"{tmp}/nk.csv"])])
                for m in methods:
                    cmd = [exe, "extract", str(edf), "--out", f"{tmp}/r.csv", "--overwrite", "--quiet",
                           "--threads", str(a.threads)]
                    name, *extra = m.split(":")  # "separator:--engine=torch": options after colons
                    if name not in ("default", "separator(default)"):
                        cmd += ["--method", name]
                    plan.append((m, cmd + extra))
                for name, cmd in plan:
                    r = run_measured(cmd, env)
                    r.update(night=night, hours=h, rep=rep, method=name, load=C.load_average())
                    out_csv = Path(f"{tmp}/nk.csv" if name == "neurokit2" else f"{tmp}/r.csv")
                    if r["code"] == 0 and out_csv.exists():
                        with open(out_csv, "rb") as fh:
                            r["rows"] = sum(1 for _ in fh) - 1
                        out_csv.unlink()
                    print(f"   {night} {h:g} h #{rep + 1} {name}: {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU, "
                          f"{r['rss_mb']:.0f} MB" + ("" if r["code"] == 0 else f" (exit {r['code']}: "
                                                     f"{r['log'].strip().splitlines()[-1][:100] if r['log'].strip() else ''})")
                          + f" (load {r['load']})", flush=True)
                    results["runs"].append(r)
    load_after = C.load_average()
    _report(results, a, methods, load_before, load_after, nights)
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "cpu": C.cpu_name(), "cores": os.cpu_count(),
                                            "load_before": load_before, "load_after": load_after, **results},
                                           indent=2))
        print(f"results written to {a.json}")
    return 0


def _report(results: dict, a, methods: list[str], load_before: str, load_after: str, nights: list[str]) -> None:
    if results["startup"]:
        rows = [[s["name"], C.fmt(s["wall_s"]), C.fmt(s["cpu_s"]), C.fmt(s["rss_mb"]), "yes" if s["ok"] else "FAILED"]
                for s in results["startup"]]
        C.print_table("Start-up alone (fresh processes)", ["command", "wall s", "CPU s", "peak RSS MB", "ok"],
                      rows, f"median of {a.startup_repeats} runs each")
    rows = []
    runs = results["runs"]
    for night in nights:
        for h in a.hours:
            names = ([] if a.no_neurokit else ["neurokit2"]) + methods
            for name in names:
                rs = [r for r in runs if r["night"] == night and r["hours"] == h and r["method"] == name]
                ok = [r for r in rs if r["code"] == 0]
                if not rs:
                    continue
                if not ok:
                    rows.append([night, f"{h:g} h", name, "failed"] + [None] * 8)
                    continue
                wall = statistics.median(r["wall_s"] for r in ok)
                cpu = statistics.median(r["cpu_s"] for r in ok)
                rss = statistics.median(r["rss_mb"] for r in ok)
                ratio_w = ratio_c = ratio_r = None
                if name != "neurokit2" and not a.no_neurokit:
                    pairs = [(r, next((b for b in runs if b["night"] == night and b["hours"] == h and b["rep"] == r["rep"]
                                       and b["method"] == "neurokit2" and b["code"] == 0), None)) for r in ok]
                    pairs = [(r, b) for r, b in pairs if b]
                    if pairs:
                        ratio_w = statistics.median(r["wall_s"] / b["wall_s"] for r, b in pairs)
                        ratio_c = statistics.median(r["cpu_s"] / b["cpu_s"] for r, b in pairs)
                        ratio_r = statistics.median(r["rss_mb"] / b["rss_mb"] for r, b in pairs)
                rows.append([night, f"{h:g} h", name, C.fmt(wall), C.fmt(min(r["wall_s"] for r in ok)), C.fmt(cpu),
                             C.fmt(rss), C.fmt(ratio_w), C.fmt(ratio_c), C.fmt(ratio_r), f"{len(ok)}/{len(rs)}",
                             str(ok[0].get("rows", "-"))])
    cap = (f"{N_FS}-Hz 12-channel PSG-like nights (benchmarks/nights.py); respsep --threads {a.threads}; "
           f"median of {a.repeats} paired runs (ratios: median of per-run ratios to the NeuroKit2 run of the "
           f"same repeat). Load average before {load_before}, after {load_after} on {os.cpu_count()} cores.")
    C.print_table("Whole process: respsep extract vs the NeuroKit2 pipeline",
                  ["night", "length", "method", "wall s", "min s", "CPU s", "peak RSS MB", "x NK wall", "x NK CPU",
                   "x NK RSS", "ok", "rows"], rows, cap)


N_FS = PSG_FS


if __name__ == "__main__":
    sys.exit(main())
