"""Extraction speed: an 8-hour night, wall time and peak memory, against two baselines.

A simulated ECG night at 256 Hz (cached, see ``_common.night_ecg``) is turned into the
respiration waveform at 25 Hz exactly as ``respsep extract`` does it (resampling to 200 Hz,
segmenting, the model, overlap-add, resampling to 25 Hz), on the CPU with ``--threads`` torch
threads (default 2) and on CUDA when present. Every method runs in its own fresh process: one
untimed warm-up on a short piece, then ``--repeats`` timed runs (median reported); the peak RSS is
that process's whole peak (Python + torch + data + work).

Methods
-------
``respsep (fast path)``
    :meth:`resp_sep.separate.Separator.extract` as shipped: half-overlapping segments (twice the
    segments of a plain run), only the respiration pathway computed (:class:`RespirationNet`),
    batches of 16 (CPU) / 128 (CUDA), ``torch.inference_mode``, bf16 autocast on CUDA.
``respiration-only decode`` (``--all``)
    The same with ``Separator(fast=False)``: every encoder encodes, the masked encoding of the
    respiration encoder is decoded (the previous extraction code).
``(a) plain``
    The straightforward inference as published (:func:`resp_sep.separate.extract_plain`): every
    encoder's masked output decoded, the respiration one picked afterwards, fp32 eager under
    ``torch.no_grad``, non-overlapping segments, one at a time.
``(b) NeuroKit2 EDR``
    :func:`resp_sep.baselines.all_baselines` (R peaks, the four ``ecg_rsp`` surrogates and the
    R-amplitude EDR), CPU only.

Run from the repository root::

    python benchmarks/bench_extract.py               # 8-h night, 3 repeats, half-width model
    python benchmarks/bench_extract.py --quick       # 1-h night, 1 repeat, (a) timed on 15 min and
                                                     # scaled (smoke run, about a minute)
    python benchmarks/bench_extract.py --model-config full --device cuda --compile

Columns: ``s/night`` median seconds for the night as given (``--hours``), ``min s`` the fastest
repeat (the least disturbed by other load); ``x vs (a)`` speed-up
over the plain baseline on the same device; ``nights/h`` 8-h nights per hour of one process;
``RTF`` real-time factor (recording seconds per second of processing); ``model s`` the part of
the time spent inside the model calls (the rest: resampling, scaling, stitching); ``GFLOP`` the
convolution FLOPs of the night (FlopCounterMode, per segment times segments).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

METHODS = {
    "fast": "respsep (fast path)",
    "compiled": "respsep (fast path) + torch.compile",
    "resp_only": "respiration-only decode (fast=False)",
    "bf16": "fast path under CPU bf16 autocast (not shipped: see docs)",
    "plain": "(a) plain: all encoders, no overlap, fp32 eager",
    "neurokit": "(b) NeuroKit2 EDR (all_baselines)",
}


# ------------------------------------------------------------------------------------------ child


def _timed(fn, acc: list):
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        acc[0] += time.perf_counter() - t0
        return out
    return wrapper


def child(spec: dict) -> None:
    """One method on one device, in this fresh process; prints the result line."""
    import torch

    from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN
    from resp_sep.separate import Separator, extract_plain, segment_starts

    dev, kind = spec["device"], spec["kind"]
    torch.set_num_threads(spec["threads"])
    ecg = C.night_ecg(spec["hours"])
    fs = C.NIGHT_FS
    # warm-up piece: one full batch (kernels, allocator); the plain path runs one segment at a time
    seg_s = SEGMENT_LEN / MODEL_FS
    warm_segments = 1.5 if kind == "plain" else (spec.get("batch_size") or 16) / 2 + 0.5
    warm = ecg[: int(warm_segments * seg_s * fs)]
    n200 = int(np.ceil(len(ecg) * MODEL_FS / fs))
    model_s = [0.0]
    res: dict = {}
    if kind == "neurokit":
        from resp_sep.sources import all_heuristics

        run = lambda x: all_heuristics(x, fs, "ecg")
    else:
        model = C.random_model(spec["model_config"], device=dev)
        k = 2  # the respiration encoder: any index costs the same
        if kind == "plain":
            model.separate = _timed(model.separate, model_s)
            run = lambda x: extract_plain(model, x, fs, k, device=dev)
            n_seg = len(segment_starts(n200, SEGMENT_LEN, SEGMENT_LEN))
            seg_fn = lambda xx: model.separate(xx)
        else:
            sep = Separator(model, k, torch.device(dev), fast=kind != "resp_only", compile=kind == "compiled")
            if kind == "bf16":  # oneDNN bf16 convolutions (AVX512-BF16/AMX); results differ ~1e-2
                def bf16_logits(x, _net=sep._fast_net):
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return _net()(x)
                sep._fast_logits = bf16_logits
            sep.respiration_segments = _timed(sep.respiration_segments, model_s)
            run = lambda x: sep.extract(x, fs, batch_size=spec.get("batch_size"))
            n_seg = len(segment_starts(n200, SEGMENT_LEN, SEGMENT_LEN // 2))
            if kind == "resp_only":
                seg_fn = lambda xx: model.decode(model.mask(model.encode(xx), k))
            else:
                seg_fn = lambda xx: sep._fast_net()(xx)
        with torch.no_grad():  # (FlopCounterMode's module hooks fail under inference_mode)
            flops = C.segment_flops(model, seg_fn, torch.rand(1, 1, SEGMENT_LEN, device=dev))
        res.update(segments=n_seg, gflop_per_segment=flops / 1e9, gflop=flops * n_seg / 1e9)
    t0 = time.perf_counter()
    run(ecg if dev == "cuda" else warm)  # CUDA: the full batch size once (kernels, compile, allocator)
    res["warmup_s"] = time.perf_counter() - t0
    model_s[0] = 0.0
    sync = torch.cuda.synchronize if dev == "cuda" else None
    if spec.get("barrier"):  # throughput mode: start together with the other workers
        bar = Path(spec["barrier"])
        (bar / f"ready-{spec['worker']}").touch()
        while not (bar / "go").exists():
            time.sleep(0.01)
        res["start"] = time.time()
    part = spec.get("timed_hours") or spec["hours"]
    piece = ecg[: int(part * 3600 * fs)] if part < spec["hours"] else ecg
    med, times = C.median_time(lambda: run(piece), spec["repeats"], sync=sync)
    res["end"] = time.time()
    scale = len(ecg) / len(piece)  # the work is linear in the number of segments
    res.update(seconds=med * scale, times=[t * scale for t in times], model_s=model_s[0] / len(times) * scale)
    if scale != 1:
        res["timed_hours"] = part
    if dev == "cuda":
        res["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    C.child_result(res)


# ----------------------------------------------------------------------------------------- parent


def throughput(a, dev: str) -> dict:
    """``--workers`` processes extracting nights at once, one torch thread each (on CUDA they share
    the GPU; each holds a CPU core for resampling, scaling and stitching). Nights per minute over
    the common period."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as bar:
        procs = []
        for w in range(a.workers):
            spec = {"kind": "fast", "device": dev, "hours": a.hours, "repeats": a.repeats, "threads": 1,
                    "model_config": a.model_config, "batch_size": a.batch_size, "barrier": bar, "worker": w}
            procs.append(subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        print(f"-> {a.workers} workers on {dev}, {a.repeats} nights each (load {C.load_average()})", flush=True)
        while len(list(Path(bar).glob("ready-*"))) < a.workers:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        (Path(bar) / "go").touch()
        t0 = time.time()
        outs = [p.communicate()[0] for p in procs]
    res = [json.loads(o.split(C.RESULT_MARK)[-1].splitlines()[0]) for o in outs if C.RESULT_MARK in o]
    if len(res) < a.workers:
        return {"kind": "workers", "device": dev, "method": f"fast path, {a.workers} processes",
                "error": "a worker failed"}
    span = max(r["end"] for r in res) - t0
    nights = a.workers * a.repeats * a.hours / 8.0
    return {"kind": "workers", "device": dev, "method": f"fast path, {a.workers} processes at once",
            "seconds": span / (a.workers * a.repeats), "wall_s": span, "nights_8h": nights,
            "nights_per_min": 60 * nights / span, "peak_rss_mb": None}



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=8.0, help="night length (default 8)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per method (median; default 3)")
    ap.add_argument("--model-config", choices=list(C.MODEL_CONFIGS), default="half",
                    help="half (shipped CPU models, default) or full (published widths)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--device", default="auto", help="cpu, cuda, or auto = cpu and cuda when present")
    ap.add_argument("--batch-size", type=int, default=None, help="fast path batch (default 16 CPU / 128 CUDA)")
    ap.add_argument("--compile", action="store_true", help="also time the fast path with torch.compile (CUDA)")
    ap.add_argument("--all", action="store_true", help="also time the respiration-only decode (fast=False)")
    ap.add_argument("--bf16", action="store_true", help="also time the fast path under CPU bf16 autocast")
    ap.add_argument("--no-neurokit", action="store_true", help="skip baseline (b)")
    ap.add_argument("--no-plain", action="store_true", help="skip baseline (a)")
    ap.add_argument("--workers", type=int, default=0,
                    help="throughput: this many processes extracting at once, 1 thread each, on CUDA when "
                         "present (default 0: skip)")
    ap.add_argument("--plain-hours", type=float, default=None,
                    help="time baseline (a) on the first H hours only and scale to the night (it is linear "
                         "in the number of segments; default: the whole night, --quick: 0.25)")
    ap.add_argument("--quick", action="store_true", help="1-h night, 1 repeat, (a) timed on 0.25 h (smoke run)")
    a = C.parse_args_or_run_child(ap, argv, child)
    if a is None:
        return 0
    if a.quick:
        a.hours, a.repeats = 1.0, 1
        a.plain_hours = a.plain_hours or 0.25
    devices = ["cpu", "cuda"] if a.device == "auto" else [a.device]
    if "cuda" in devices and not C.cuda_available():
        if a.device == "cuda":
            raise SystemExit("no CUDA device")
        devices.remove("cuda")
    C.night_ecg(a.hours)  # simulate once, before the children
    info = C.machine_info(a.threads)
    C.print_info(info, "before")
    plan = []
    for dev in devices:
        plan.append((dev, "fast"))
        if a.compile and dev == "cuda":
            plan.append((dev, "compiled"))
        if a.all:
            plan.append((dev, "resp_only"))
        if a.bf16 and dev == "cpu":
            plan.append((dev, "bf16"))
        if not a.no_plain:
            plan.append((dev, "plain"))
    if not a.no_neurokit:
        plan.append(("cpu", "neurokit"))
    results = []
    for dev, kind in plan:
        spec = {"kind": kind, "device": dev, "hours": a.hours, "repeats": a.repeats, "threads": a.threads,
                "model_config": a.model_config, "batch_size": a.batch_size,
                "timed_hours": a.plain_hours if kind == "plain" else None}
        print(f"-> {METHODS[kind]} on {dev} (load {C.load_average()})", flush=True)
        r, rss = C.run_child(__file__, spec)
        r.update(kind=kind, device=dev, peak_rss_mb=rss, method=METHODS[kind])
        if r.get("timed_hours"):
            r["method"] += f" [timed on {r['timed_hours']:g} h, scaled]"
        results.append(r)
    if a.workers:
        results.append(throughput(a, "cuda" if "cuda" in devices else "cpu"))
    info_after = C.load_average()
    peak = {dt: C.matmul_peak_gflops(a.threads, dt) for dt in ("float32", "bfloat16")}
    rows = []
    night_s = a.hours * 3600
    for r in results:
        if "error" in r:
            rows.append([r["method"], r["device"], r["error"]] + [None] * 11)
            continue
        base = next((b for b in results if b["kind"] == "plain" and b["device"] == r["device"] and "error" not in b),
                    None)
        t = r["seconds"]
        t8 = t * 8.0 / a.hours
        rows.append([r["method"], r["device"], C.fmt(t), C.fmt(min(r["times"])) if r.get("times") else None,
                     C.fmt(base["seconds"] / t) if base else None,
                     C.fmt(3600 / t8), C.fmt(60 / t8), C.fmt(night_s / t), C.fmt(r.get("model_s")),
                     C.fmt(r["peak_rss_mb"]), C.fmt(r.get("gflop")),
                     C.fmt(r["gflop"] / r["model_s"]) if r.get("gflop") and r.get("model_s") else None,
                     C.fmt(100 * r["gflop"] / r["model_s"] / peak["float32"])
                     if r.get("gflop") and r.get("model_s") and r["device"] == "cpu" else None,
                     C.fmt(r.get("warmup_s"))])
    cap = (f"{a.hours:g}-h simulated ECG night at 256 Hz, {a.model_config}-width model (random weights), "
           f"{a.threads} CPU threads, median of {a.repeats}; load average before {info['load_avg_1_5_15']}, "
           f"after {info_after} on {info['cores']} cores. Measured matmul peak on {a.threads} threads (2048^2, "
           f"best of 5): {peak['float32']:.0f} GFLOP/s float32, {peak['bfloat16']:.0f} GFLOP/s bfloat16.")
    cols = ["method", "device", "s/night", "min s", "x vs (a)", "nights/h (8 h)", "nights/min", "RTF",
            "model s", "peak RSS MB", "GFLOP", "GFLOP/s (model)", "% fp32 peak", "warm-up s"]
    C.print_table("Extraction of one night", cols, rows, cap)
    C.save_json(a.json, {"args": vars(a), "machine": info, "load_after": info_after, "peak_gflops": peak,
                         "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
