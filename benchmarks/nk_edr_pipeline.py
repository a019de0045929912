"""The heuristic peer of ``respsep extract``: NeuroKit2 ECG-derived respiration as a user writes it.

Reads the ECG channel of an EDF/BDF with pyedflib (a WFDB record with wfdb), then ``nk.ecg_clean`` -> ``nk.ecg_peaks`` ->
``nk.ecg_rate`` -> ``nk.ecg_rsp`` (all at the ECG's own rate, NeuroKit2's defaults), brings the
respiration to 25 Hz (the rate of respsep's output, so both write the same number of rows) and
writes ``time_s,resp`` with pandas (NeuroKit2 works in pandas already).

Used by ``benchmarks/bench_cli.py`` as a child process::

    python benchmarks/nk_edr_pipeline.py night.edf out.csv [--label ECG]
    python benchmarks/nk_edr_pipeline.py night.hea out.csv
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("edf")
    ap.add_argument("out")
    ap.add_argument("--label", default="ECG", help="ECG channel label (default ECG)")
    ap.add_argument("--out-rate", type=float, default=25.0)
    a = ap.parse_args(argv)

    import neurokit2 as nk
    import numpy as np
    import pandas as pd

    if a.edf.lower().endswith(".hea"):
        import wfdb

        rec = wfdb.rdrecord(a.edf[:-4], channel_names=[a.label])
        fs, ecg = float(rec.fs), rec.p_signal[:, 0]
    else:
        import pyedflib

        with pyedflib.EdfReader(a.edf) as f:
            i = [s.strip() for s in f.getSignalLabels()].index(a.label)
            fs = float(f.getSampleFrequency(i))
            ecg = f.readSignal(i)
    sr = round(fs)
    clean = nk.ecg_clean(ecg, sampling_rate=sr)
    _, info = nk.ecg_peaks(clean, sampling_rate=sr)
    rate = nk.ecg_rate(info["ECG_R_Peaks"], sampling_rate=sr, desired_length=len(clean))
    rsp = nk.ecg_rsp(rate, sampling_rate=sr)
    n_out = round(len(rsp) * a.out_rate / fs)
    t = np.arange(n_out) / a.out_rate
    resp = np.interp(t, np.arange(len(rsp)) / fs, rsp)
    pd.DataFrame({"time_s": t, "resp": resp}).to_csv(a.out, index=False, float_format="%.6g")
    return 0


if __name__ == "__main__":
    sys.exit(main())
