"""Side-by-side: how strongly breathing shows in real and simulated ECG/PPG (simulator calibration).

    .venv/bin/python scripts/modulation_table.py [--sim N] [--minutes M] [--profile default|real]

For every MARSH and CinC recording not held out in models/ecg.toml (`exclude`), and for N
simulated recordings, the median |r| between each respiratory modulation
(:mod:`resp_sep.modulation`: ECG baseline wander, R-wave amplitude, RSA; PPG baseline, pulse
amplitude) and the thoracic reference (MARSH `Thorax IP`, CinC `RESP`, the simulator's belt)
over 60-s windows in 0.1-0.7 Hz. Prints one markdown table: the median over recordings and, in
brackets, the interquartile range.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from resp_sep.modulation import SOURCES, recording_stats  # noqa: E402


def real_rows(folder: Path, pattern: str, exclude: set[str]) -> list[dict]:
    from resp_sep.errors import RespSepError
    from resp_sep.preprocess import load_signal

    rows = []
    for p in sorted(folder.glob(pattern)):
        name = p.name.split(".")[0]
        if name in exclude:
            continue
        try:
            ref = load_signal(str(p), "thor", fs_out=25.0, min_fs=1.0)
        except RespSepError:
            continue
        ecg = ppg = None
        try:
            ecg = load_signal(str(p), "ecg", fs_out=200.0).x
        except RespSepError:
            pass
        try:
            ppg = load_signal(str(p), "ppg", fs_out=100.0).x
        except RespSepError:
            pass
        n = int(ref.x.size / 25.0 * 200)
        if "cinc" in str(folder):  # the alarm at 5:00: only the first 270 s are usable
            ref.x = ref.x[: int(270 * 25)]
            ecg = None if ecg is None else ecg[: 270 * 200]
            ppg = None if ppg is None else ppg[: 270 * 100]
        rows.append(recording_stats(None if ecg is None else ecg[:n], 200.0, ppg, 100.0, ref.x, 25.0))
    return rows


def sim_rows(n: int, minutes: float, profile: str) -> list[dict]:
    from resp_sep.simulate import simulate

    rows = []
    for i in range(n):
        kw = {} if profile == "default" else {"profile": profile}
        s = simulate(minutes * 60, fs=200.0, seed=1000 + i, ppg_fs=100.0, **kw)
        rows.append(recording_stats(s.ecg, s.fs, s.ppg, s.ppg_fs, s.thor, s.fs))
    return rows


def summary(rows: list[dict]) -> list[str]:
    out = []
    for k in SOURCES:
        v = np.array([r[k] for r in rows if k in r and np.isfinite(r[k])])
        out.append("-" if v.size == 0 else
                   f"{np.median(v):.2f} ({np.percentile(v, 25):.2f}-{np.percentile(v, 75):.2f}, n={v.size})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", type=int, default=12)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--profile", action="append", default=None)
    ap.add_argument("--no-real", action="store_true")
    a = ap.parse_args()
    cfg = tomllib.loads((REPO / "models" / "ecg.toml").read_text())
    exclude = set(cfg["exclude"])
    data = REPO.parent / "shared" / "data"
    print("| recordings | " + " | ".join(SOURCES) + " |")
    print("|---" * (len(SOURCES) + 1) + "|")
    if not a.no_real:
        print("| MARSH (not held out) | " + " | ".join(summary(real_rows(data / "marsh-edf", "*.edf", exclude))) + " |")
        print("| CinC 2015 (not held out, first 270 s) | " +
              " | ".join(summary(real_rows(data / "cinc2015-wfdb", "*.hea", exclude))) + " |")
    for prof in a.profile or ["default"]:
        print(f"| simulated, profile {prof} ({a.sim} x {a.minutes:g} min) | " +
              " | ".join(summary(sim_rows(a.sim, a.minutes, prof))) + " |")


if __name__ == "__main__":
    main()
