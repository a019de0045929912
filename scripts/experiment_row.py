"""One markdown row per training run for docs/experiments.md, read from its checkpoint's history.

    .venv/bin/python scripts/experiment_row.py experiments/ecg/RUN.last.pt [...]

Columns: run, optimiser steps, segment passes, training wall time and process CPU time (min,
cumulative over resumed sessions), median segments/s of wall time and segment passes per CPU second (validation included; the
fair speed on a shared core), best validation point (step), the validation
breaths/min MAE there of the label-free chosen encoder and of the best encoder (with its |r|),
the constant-guess MAE, and the reconstruction BCE excess over the target's entropy floor (at the
best point and at the end; the floor and the 1-Hz low-pass reference for scale).
"""

from __future__ import annotations

import sys

import numpy as np
import torch


def row(path: str) -> str:
    try:
        ck = torch.load(path, weights_only=True)
    except FileNotFoundError:
        return f"| {path} | not run |"
    hist = [h for h in ck["metrics"]["history"] if "val" in h]
    if not hist:
        return f"| {path} | no validation yet |"
    cfg = ck["train_config"]
    best_i = int(np.argmin([h["val"]["metric"] for h in hist]))
    b, last = hist[best_i], hist[-1]
    v, vl = b["val"], last["val"]
    refs = v.get("recon_refs", {})
    sps = np.median([h["segments_per_s"] for h in hist])
    steps = last.get("step", last["epoch"])
    f = lambda x, d=2: "-" if x is None or not np.isfinite(x) else f"{x:.{d}f}"
    return (f"| {path.split('/')[-1].replace('.last.pt', '').replace('.pt', '')} | {steps} | "
            f"{steps * cfg['batch_size']} | {last.get('train_s_total', 0) / 60:.1f} / {last.get('cpu_s_total', 0) / 60:.1f} | "
            f"{sps:.1f} / {steps * cfg['batch_size'] / max(1e-9, last.get('cpu_s_total', 0)):.1f} | {b.get('step', b['epoch'])} | {f(v.get('mae_bpm'))} (enc {v['resp_encoder']}) | "
            f"{f(v.get('best_encoder_mae_bpm'))} (enc {v.get('best_encoder', '-')}, abs r {f(v.get('best_encoder_abs_r'))}) | "
            f"{f(v.get('constant_guess_mae_bpm'))} | +{f(v.get('val_recon_excess'), 4)} / +{f(vl.get('val_recon_excess'), 4)} "
            f"(floor {f(refs.get('floor'), 4)}, 1-Hz LP +{f(refs.get('lowpass_1hz', np.nan) - refs.get('floor', np.nan), 4)}) |")


HEADER = ("| run | steps | segment passes | train / CPU min | seg/s (wall / CPU) | best step | val MAE (chosen enc) | "
          "best-encoder MAE (abs r) | constant guess | BCE excess over floor: best / end |\n"
          "|---|---|---|---|---|---|---|---|---|---|")

if __name__ == "__main__":
    print(HEADER)
    for p in sys.argv[1:]:
        print(row(p))
