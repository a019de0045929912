"""Training throughput: segments per second of the training step, and FLOP utilisation.

Two training steps of the same model and losses, each timed in its own fresh process:

``respsep step``
    What ``respsep train`` does per batch (resp_sep/train.py): :func:`resp_sep.losses.total_loss`
    (its zero-reconstruction term decodes one all-zero encoding), Adam (weight decay 1e-6),
    gradient clipping at 0.5, ``zero_grad(set_to_none=True)``; bf16 autocast on CUDA.
``naive fp32``
    A straightforward eager fp32 loop of the same losses whose zero-reconstruction pass decodes a
    full batch of zero encodings (as a direct implementation would), ``zero_grad()`` to zeros.

Segments are cut from a simulated ECG night (min-max scaled, copied to the device every step as
the training loop does). ``--warmup`` untimed steps, then ``--steps`` timed ones; the median step
time gives segments/s and the seconds per epoch of 10,000 segments. FLOPs of one step (forward
and backward; convolutions and matrix products, not the element-wise work) are counted with
``torch.utils.flop_counter.FlopCounterMode``; achieved FLOP/s is that over the median step time,
and on CUDA its share of ``--peak-tflops`` (default 989: H100 SXM dense bf16; the naive fp32
step can at best reach the TF32/fp32 peak, far lower).

Run from the repository root::

    python benchmarks/bench_train.py            # CPU (2 threads), and CUDA when present
    python benchmarks/bench_train.py --quick    # 2 timed steps (smoke run)
    python benchmarks/bench_train.py --device cuda --model-config full --batch-size 256
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

METHODS = {"ours": "respsep step (train.py)", "naive": "naive fp32 (zero pass on a full batch)"}
EPOCH_SEGMENTS = 10_000


def naive_total_loss(model, x, weights):
    """``total_loss`` as a direct implementation writes it: zero reconstruction on a full batch."""
    import torch
    import torch.nn.functional as F

    from resp_sep.losses import encoding_l2, reconstruction_loss, sparse_mixing_loss

    logits, z = model(x)
    n = model.config.n_encoders
    recon = reconstruction_loss(logits, x)
    mix = sparse_mixing_loss(model.mixing_layers(), n, weights.mix_scaling)
    z0 = torch.zeros_like(z)
    zlog = model.decode(z0, freeze_norm=True)
    zero = F.binary_cross_entropy_with_logits(zlog, torch.zeros_like(zlog))
    zl2 = encoding_l2(z, n)
    loss = recon + weights.mix * mix + weights.zero * zero + weights.z * zl2
    parts = {"recon": recon.item(), "mix": mix.item(), "zero": zero.item(), "z": zl2.item(), "total": loss.item()}
    return loss, parts


def training_segments(n_min: int) -> np.ndarray:
    """At least ``n_min`` min-max scaled segments (float32, (n, L)) from the cached 1-h night."""
    from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN, minmax_scale, resample, segment

    x = resample(C.night_ecg(1.0), C.NIGHT_FS, MODEL_FS)
    hop = max(1, min(SEGMENT_LEN, (len(x) - SEGMENT_LEN) // max(1, n_min - 1)))
    segs = minmax_scale(segment(x, SEGMENT_LEN, hop))
    return np.ascontiguousarray(segs[:max(n_min, 1)])


# ------------------------------------------------------------------------------------------ child


def child(spec: dict) -> None:
    import torch

    from resp_sep.losses import LossWeights, total_loss

    dev = torch.device(spec["device"])
    torch.set_num_threads(spec["threads"])
    cuda = dev.type == "cuda"
    bs = spec["batch_size"]
    data = training_segments(max(2 * bs, 64))
    model = C.random_model(spec["model_config"], device=dev, train=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    weights = LossWeights()
    ours = spec["kind"] == "ours"
    use_bf16 = ours and cuda
    loss_fn = total_loss if ours else naive_total_loss
    rng = np.random.default_rng(0)

    def step():
        rows = rng.choice(len(data), bs, replace=False)
        x = torch.from_numpy(data[rows])[:, None].to(dev, non_blocking=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss, parts = loss_fn(model, x, weights)
        opt.zero_grad(set_to_none=ours)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        return parts

    sync = torch.cuda.synchronize if cuda else None
    t0 = time.perf_counter()
    for _ in range(spec["warmup"]):
        step()
    if sync:
        sync()
    warm = time.perf_counter() - t0
    flops = C.segment_flops(model, step)  # one whole step: forward, backward (the optimizer adds none)
    med, times = C.median_time(step, spec["steps"], sync=sync)
    res = {"step_s": med, "times": times, "flops_per_step": flops, "warmup_s": warm, "batch_size": bs}
    if cuda:
        res["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    C.child_result(res)


# ----------------------------------------------------------------------------------------- parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="cpu, cuda, or auto = cpu and cuda when present")
    ap.add_argument("--model-config", choices=list(C.MODEL_CONFIGS), default="half",
                    help="half (shipped CPU models, default) or full (published widths)")
    ap.add_argument("--batch-size", type=int, default=None, help="segments per step (default 32 CPU, 256 CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 5 CPU, 30 CUDA)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 CPU, 5 CUDA)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="GPU peak for the utilisation column (default 989: H100 SXM dense bf16)")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive fp32 step")
    ap.add_argument("--quick", action="store_true", help="2 timed steps, 1 warm-up (CPU batch 16)")
    a = C.parse_args_or_run_child(ap, argv, child)
    if a is None:
        return 0
    devices = ["cpu", "cuda"] if a.device == "auto" else [a.device]
    if "cuda" in devices and not C.cuda_available():
        if a.device == "cuda":
            raise SystemExit("no CUDA device")
        devices.remove("cuda")
    C.night_ecg(1.0)
    info = C.machine_info(a.threads)
    C.print_info(info, "before")
    results = []
    for dev in devices:
        cuda = dev == "cuda"
        bs = a.batch_size or (256 if cuda else (16 if a.quick else 32))
        steps = a.steps or (2 if a.quick else (30 if cuda else 5))
        warmup = a.warmup if a.warmup is not None else (1 if a.quick else (5 if cuda else 1))
        for kind in ["ours"] + ([] if a.no_naive else ["naive"]):
            spec = {"kind": kind, "device": dev, "batch_size": bs, "steps": steps, "warmup": warmup,
                    "threads": a.threads, "model_config": a.model_config}
            print(f"-> {METHODS[kind]} on {dev}, batch {bs} (load {C.load_average()})", flush=True)
            r, rss = C.run_child(__file__, spec)
            r.update(kind=kind, device=dev, method=METHODS[kind], peak_rss_mb=rss)
            results.append(r)
    after = C.load_average()
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["method"], r["device"], r["error"]] + [None] * 7)
            continue
        base = next((b for b in results if b["kind"] == "naive" and b["device"] == r["device"] and "error" not in b),
                    None)
        sps = r["batch_size"] / r["step_s"]
        tflops = r["flops_per_step"] / r["step_s"] / 1e12
        util = C.fmt(100 * tflops / a.peak_tflops) if r["device"] == "cuda" else None
        rows.append([r["method"], r["device"], r["batch_size"], C.fmt(r["step_s"]), C.fmt(sps),
                     C.fmt(EPOCH_SEGMENTS / sps), C.fmt(base["step_s"] / r["step_s"]) if base else None,
                     C.fmt(r["flops_per_step"] / r["batch_size"] / 1e9), C.fmt(tflops * 1e3), util])
    cap = (f"{a.model_config}-width model, random weights; {a.threads} CPU threads; median step time; GFLOP/seg = "
           f"counted FLOPs of one step per segment; % peak of {a.peak_tflops:g} TFLOP/s (CUDA only). Load average "
           f"before {info['load_avg_1_5_15']}, after {after} on {info['cores']} cores.")
    C.print_table("Training step throughput", ["method", "device", "batch", "s/step", "segments/s",
                                               f"s/epoch ({EPOCH_SEGMENTS:,})", "x vs naive", "GFLOP/seg",
                                               "GFLOP/s", "% peak"], rows, cap)
    C.save_json(a.json, {"args": vars(a), "machine": info, "load_after": after, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
