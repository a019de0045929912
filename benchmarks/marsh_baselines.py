"""Heuristic baselines on MARSH: breathing-rate error against the thoracic impedance reference.

For every MARSH subject (``../shared/data/marsh-edf/*.edf``) the rate of each surrogate
(:mod:`resp_sep.baselines`: ECG ones on ``ECG``, PPG ones on ``Pleth``) and of the other references
(``Nasal Therm``, the hand-marked ``end-inspiration`` annotations) is scored with
:func:`resp_sep.rate.breathing_rate` on the same windows as the ``Thorax IP`` reference, and the
absolute errors (breaths/min) over the windows both score are pooled over subjects.

Run from the repository root::

    python benchmarks/marsh_baselines.py [--data ../shared/data/marsh-edf] [--window 60] [--jobs 2]

Columns: ``MAE`` pooled mean absolute error (breaths/min); ``med`` median of the per-subject MAEs;
``n`` windows paired; ``scored`` share of the reference-scored windows that the source also scores
(flagged windows have no rate and are left out, so read MAE together with it); ``<2`` share of
paired windows within 2 breaths/min.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from resp_sep.baselines import all_baselines
from resp_sep.io import read_recording
from resp_sep.rate import RateWindows, breathing_rate, paired_abs_error, rate_from_breath_times

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "marsh-edf"
REFERENCE = "Thorax IP"


def score_subject(path: str, window_s: float = 60.0) -> dict:
    """Rates of every source for one subject.

    Returns
    -------
    dict
        ``"name"``, ``"seconds"`` (baseline computation time), ``"rates"``: source -> RateWindows
        (the reference under ``"ref"``).
    """
    rec = read_recording(path)
    thor = rec.channel(REFERENCE)
    duration = thor.duration_s
    rates: dict[str, RateWindows] = {"ref": breathing_rate(thor.read(), thor.fs, window_s=window_s,
                                                           kind="reference")}
    nasal = rec.channel("Nasal Therm")
    rates["ref: Nasal Therm"] = breathing_rate(nasal.read(), nasal.fs, window_s=window_s, kind="reference")
    for label in ("end-inspiration thorax", "end-inspiration nasal"):
        times = [a.onset_s for a in rec.annotations if a.label == label]
        rates[f"ref: annotations '{label}'"] = rate_from_breath_times(times, duration, window_s)
    t0 = time.perf_counter()
    for channel, kind in (("ECG", "ecg"), ("Pleth", "ppg")):
        ch = rec.channel(channel)
        for name, (wave, fs) in all_baselines(ch.read(), ch.fs, kind).items():
            rates[name] = breathing_rate(wave, fs, window_s=window_s)
    return {"name": Path(path).stem, "seconds": time.perf_counter() - t0, "rates": rates}


def table(results: list[dict]) -> list[tuple]:
    """Rows (source, MAE, median subject MAE, n, scored share, share within 2) against the reference."""
    sources = [k for k in results[0]["rates"] if k != "ref"]
    rows = []
    for src in sources:
        errs, per_subject, n_ref, n_both = [], [], 0, 0
        for r in results:
            ref, est = r["rates"]["ref"], r["rates"][src]
            e = paired_abs_error(est, ref)
            errs.append(e)
            n_ref += int(ref.scored.sum())
            n_both += e.size
            if e.size:
                per_subject.append(e.mean())
        e = np.concatenate(errs)
        rows.append((src, e.mean() if e.size else np.nan, np.median(per_subject) if per_subject else np.nan,
                     e.size, n_both / max(n_ref, 1), np.mean(e < 2) if e.size else np.nan))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of MARSH EDF+ files")
    ap.add_argument("--window", type=float, default=60.0, help="window length (s)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    args = ap.parse_args(argv)
    files = sorted(str(p) for p in args.data.glob("*.edf"))
    if not files:
        raise SystemExit(f"no .edf files in {args.data}")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(score_subject, files, [args.window] * len(files)))
    wall = time.perf_counter() - t0
    n_ref = sum(int(r["rates"]["ref"].scored.sum()) for r in results)
    n_all = sum(len(r["rates"]["ref"]) for r in results)
    print(f"MARSH: {len(results)} subjects, {args.window:g}-s windows; reference '{REFERENCE}' scores "
          f"{n_ref}/{n_all} windows")
    print(f"{'source':<44}{'MAE':>7}{'med':>7}{'n':>6}{'scored':>8}{'<2':>7}")
    for src, mae, med, n, scored, within2 in table(results):
        print(f"{src:<44}{mae:7.2f}{med:7.2f}{n:6d}{scored:8.0%}{within2:7.0%}")
    per = [r["seconds"] for r in results]
    print(f"baselines: {np.mean(per):.2f} s per subject on average (ECG+PPG, ~15 min each); wall {wall:.0f} s")


if __name__ == "__main__":
    main()
