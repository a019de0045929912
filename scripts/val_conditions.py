"""Score one checkpoint on a run's validation windows under several evaluation conditions.

    .venv/bin/python scripts/val_conditions.py CKPT CONFIG.toml [--clip P ...] [--bn-recal N ...]

For every combination of input scaling (``--clip``: percent clipped at either end before min-max,
0 = plain min-max) and BatchNorm statistics (``--bn-recal``: 0 = the checkpoint's own running
statistics, N = recalibrated on N fixed training batches as ``bn_recalibrate = N`` does in
training), prints the label-free chosen encoder's breaths/min MAE, the best encoder's MAE and
|r|, and the reconstruction BCE excess over its floor. The weights are never changed; this
separates what an evaluation condition does from what training did.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from resp_sep.checkpoint import build_model, load_checkpoint
from resp_sep.train import TrainConfig, _calibration_batches, prepare_data, recalibrate_batchnorm, validate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("config")
    ap.add_argument("--clip", type=float, nargs="+", default=[0.0])
    ap.add_argument("--bn-recal", type=int, nargs="+", default=[0, 8])
    a = ap.parse_args()
    torch.set_num_threads(1)
    print("| checkpoint | clip % | BatchNorm statistics | chosen-encoder MAE | best-encoder MAE (abs r) | constant guess | BCE excess |")
    print("|---|---|---|---|---|---|---|")
    for clip, nb in itertools.product(a.clip, a.bn_recal):
        cfg = TrainConfig.from_toml(a.config, clip_percentile=clip, init="")
        index, val, _ = prepare_data(cfg, log=lambda *x, **k: None)
        model = build_model(load_checkpoint(a.ckpt))
        if nb:
            recalibrate_batchnorm(model, _calibration_batches(index, nb, cfg.batch_size, cfg.seed), torch.device("cpu"))
        v = validate(model, val, torch.device("cpu"))
        stats = f"recalibrated ({nb} batches)" if nb else "checkpoint's"
        print(f"| {a.ckpt.split('/')[-1]} | {clip:g} | {stats} | {v['mae_bpm']:.2f} (enc {v['resp_encoder']}) | "
              f"{v['best_encoder_mae_bpm']:.2f} (enc {v['best_encoder']}, {v['best_encoder_abs_r']:.2f}) | "
              f"{v['constant_guess_mae_bpm']:.2f} | +{v['val_recon_excess']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
