"""Is a validation MAE really below the constant guess? Per-segment errors with a bootstrap interval.

    .venv/bin/python scripts/val_bootstrap.py CHECKPOINT [--encoder K] [--config TOML]

Rebuilds the checkpoint's validation set from its own training config (segment cache reused),
scores the label-free chosen encoder (or ``--encoder K``) exactly as training validation does
(unscored windows filled with the encoder's median rate) and prints the MAE, the constant-guess
MAE on the same windows and a 95 % bootstrap interval (2,000 resamples of segments) of their
difference. An interval entirely below 0 means the encoder beats the constant guess on this set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resp_sep.checkpoint import build_model, load_checkpoint
from resp_sep.preprocess import MODEL_FS
from resp_sep.select import segment_rates
from resp_sep.train import TrainConfig, prepare_data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--encoder", type=int, default=None)
    ap.add_argument("--config", default=None, help="build the validation set of this training config instead")
    a = ap.parse_args()
    torch.set_num_threads(1)
    ck = load_checkpoint(a.checkpoint)
    if a.config:
        cfg = TrainConfig.from_toml(a.config)
    else:
        known = set(TrainConfig.__dataclass_fields__)
        cfg = TrainConfig(**{k: v for k, v in ck["train_config"].items() if k in known})
    _, val, _ = prepare_data(cfg, log=lambda *x, **k: None)
    model = build_model(ck).eval()
    k = int(ck["resp_encoder"]) if a.encoder is None else a.encoder
    with torch.no_grad():
        outs = []
        for i in range(0, len(val.x), 16):
            xb = torch.from_numpy(val.x[i:i + 16])[:, None]
            outs.append(model.separate(xb, [k])[:, 0].numpy())
    y = np.concatenate(outs)
    rates = segment_rates(y, MODEL_FS)
    ref = val.ref_rates
    has = np.isfinite(ref)
    ok = np.isfinite(rates) & has
    fill = float(np.median(rates[ok])) if ok.any() else 15.0
    est = np.where(np.isfinite(rates), rates, fill)[has]
    r = ref[has]
    err = np.abs(est - r)
    const = np.abs(r - np.median(r))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(r), size=(2000, len(r)))
    diff = err[idx].mean(1) - const[idx].mean(1)
    print(f"{a.checkpoint}: encoder {k}, {has.sum()} scored windows, coverage {ok.sum() / has.sum():.0%}")
    print(f"MAE {err.mean():.2f} breaths/min, constant guess {const.mean():.2f}; "
          f"difference {err.mean() - const.mean():+.2f} (95 % bootstrap {np.percentile(diff, 2.5):+.2f} .. "
          f"{np.percentile(diff, 97.5):+.2f})")


if __name__ == "__main__":
    main()
