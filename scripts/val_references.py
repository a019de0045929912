"""Breaths/min MAE of simple references on a training config's validation windows (what to beat).

    .venv/bin/python scripts/val_references.py experiments/ecg/e2-s6-recon.toml

Scores, on exactly the validation segments training selects checkpoints on (61.44 s each, rates
by :func:`resp_sep.select.segment_rates`, unscored windows filled with the method's median rate as
in training validation): the constant guess; the input itself; its baseline (0.6-s running median:
what an ideal additive separation of the slow drift could give); the beat-amplitude surrogate
(ECG R-wave amplitude / PPG pulse amplitude); and sarkar2015 RSA (ECG) / the PPG band-pass (PPG).
Prints (MAE, fraction of windows scored).
"""
import sys

import numpy as np
import torch
from scipy import ndimage

from resp_sep import baselines as bl
from resp_sep.preprocess import MODEL_FS
from resp_sep.select import segment_rates
from resp_sep.train import TrainConfig, prepare_data

torch.set_num_threads(1)
cfg=TrainConfig.from_toml(sys.argv[1])
_,val,_=prepare_data(cfg, log=lambda *a,**k:None)
ref=val.ref_rates; has=np.isfinite(ref); r=ref[has]
const=np.abs(r-np.median(r)).mean()
def mae(rates):
    ok=np.isfinite(rates)&has
    fill=np.median(rates[ok]) if ok.any() else 15.0
    e=np.where(np.isfinite(rates),rates,fill)[has]
    return np.abs(e-r).mean(), ok.sum()/has.sum()
print('constant', const)
print('input itself', mae(segment_rates(val.x, MODEL_FS)))
base=np.stack([ndimage.median_filter(x, size=121, mode='nearest') for x in val.x])
print('baseline (0.6-s median)', mae(segment_rates(base, MODEL_FS)))
sig = cfg.signal
rates=[]
for x in val.x:
    try:
        if sig=='ecg':
            y,fs=bl.ecg_r_amplitude_edr(x.astype(float), MODEL_FS)
        else:
            y,fs=bl.ppg_pulse_amplitude(x.astype(float), MODEL_FS)
        rates.append(segment_rates(y[None], fs)[0])
    except Exception:
        rates.append(np.nan)
print('amplitude (R-amp / pulse amp)', mae(np.array(rates)))
rates=[]
for x in val.x:
    try:
        if sig=='ecg':
            y,fs=bl.ecg_rsp_baselines(x.astype(float), MODEL_FS)['nk_ecg_rsp_sarkar2015']
        else:
            y,fs=bl.ppg_bandpass(x.astype(float), MODEL_FS)
        rates.append(segment_rates(y[None], fs)[0])
    except Exception:
        rates.append(np.nan)
print('sarkar2015 RSA / ppg bandpass', mae(np.array(rates)))
