"""Breaths/min MAE of simple references on a training config's validation windows (what to beat).

    .venv/bin/python scripts/val_references.py experiments/ecg/e2-s6-recon.toml

Scores, on exactly the validation segments training selects checkpoints on (61.44 s each, rates
by :func:`resp_sep.select.segment_rates`, unscored windows filled with the method's median rate as
in training validation): the constant guess; the input itself; its baseline (0.6-s running median:
what an ideal additive separation of the slow drift could give); the beat-amplitude surrogate
(ECG R-wave amplitude / PPG pulse amplitude); and sarkar2015 RSA (ECG) / the PPG band-pass (PPG),
each computed by respsep's own sources (:mod:`resp_sep.sources`). Prints (MAE, fraction of
windows scored).
"""

from __future__ import annotations

import sys

import numpy as np


def source_rates(segments: np.ndarray, name: str) -> np.ndarray:
    """Rate (breaths/min) of each segment by one respsep source; NaN where it cannot run (no beats)."""
    from resp_sep.preprocess import MODEL_FS
    from resp_sep.select import segment_rates
    from resp_sep.sources import GRID_FS, SignalContext, compute_source

    out = []
    for x in segments:
        ctx = SignalContext(np.asarray(x, dtype=float), MODEL_FS, name.split("_")[0])
        try:
            out.append(segment_rates(np.nan_to_num(compute_source(name, ctx).wave)[None], GRID_FS)[0])
        except Exception:  # noqa: BLE001 - no beats in this segment: not scored
            out.append(np.nan)
        finally:
            ctx.close()
    return np.array(out)


def main(argv: list[str]) -> int:
    import torch
    from scipy import ndimage

    from resp_sep.preprocess import MODEL_FS
    from resp_sep.select import segment_rates
    from resp_sep.train import TrainConfig, prepare_data

    torch.set_num_threads(1)
    cfg = TrainConfig.from_toml(argv[0])
    _, val, _ = prepare_data(cfg, log=lambda *a, **k: None)
    ref = val.ref_rates
    has = np.isfinite(ref)
    r = ref[has]

    def mae(rates):
        ok = np.isfinite(rates) & has
        fill = np.median(rates[ok]) if ok.any() else 15.0
        e = np.where(np.isfinite(rates), rates, fill)[has]
        return np.abs(e - r).mean(), ok.sum() / has.sum()

    print("constant", np.abs(r - np.median(r)).mean())
    print("input itself", mae(segment_rates(val.x, MODEL_FS)))
    base = np.stack([ndimage.median_filter(x, size=121, mode="nearest") for x in val.x])
    print("baseline (0.6-s median)", mae(segment_rates(base, MODEL_FS)))
    ecg = cfg.signal == "ecg"
    print("amplitude (R-amp / pulse amp)", mae(source_rates(val.x, "ecg_r_amplitude" if ecg else "ppg_amplitude")))
    print("sarkar2015 RSA / ppg bandpass", mae(source_rates(val.x, "ecg_rsa_sarkar2015" if ecg else "ppg_baseline")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
