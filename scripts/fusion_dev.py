"""Development measurements of the fusion design (docs/method.md), on development subjects only.

Computes every source once per recording (the library's own code), then scores fusion variants
(quality tilt, window length, weight exponent, shaping band) and each single source as
``respsep extract --method NAME`` writes it, with two breath counters: respsep's
rate function and a simpler, independent one (band-pass 0.1-0.8 Hz, peaks counted with Charlton's
``count-adv`` amplitude rule), against the thoracic reference, per group (MARSH, CinC first 270 s).

Usage (from the repository root; needs ../shared/data)::

    .venv/bin/python scripts/fusion_dev.py                 # development subjects (the default)
    .venv/bin/python scripts/fusion_dev.py --split test    # held-out subjects: report only, never tune
    .venv/bin/python scripts/fusion_dev.py --save runs/a.json          # keep every window's error...
    .venv/bin/python scripts/fusion_dev.py --against runs/a.json       # ...and compare another version with it

The held-out subjects are the ``exclude`` lists of models/ecg.toml. Every variant is compared with
"as shipped" (and with ``--against``, with the same variant of a saved run) by a record bootstrap:
recordings of a group drawn with replacement (2,000 times, seed 0), the window-pooled MAE
difference; the 95 % interval is printed. The last lines are the confidence's MAE-vs-coverage curve
(the most confident 25/50/75/100 % of windows, confidence as the ``--rates`` CSV reports it).
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import numpy as np

from resp_sep import fusion as F
from resp_sep import quality as Q
from resp_sep.io import read_recording
from resp_sep.pipeline import ExtractOptions, respiration
from resp_sep.preprocess import load_signal
from resp_sep.rate import breathing_rate
from resp_sep.sources import SOURCES, SignalContext, source_families, source_names

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
#: name -> fusion settings (module constants and fuse() keywords) of each variant scored
VARIANTS = {
    "as shipped": {},
    "no tilt": {"TILT": 0.0},
    "60-s windows": {"window_s": 60.0, "hop_s": 30.0},
    "weights q^1": {"power": 1.0},
    "no shaping": {"shape": False},
    "no level (amplitude not evened out)": {"level": False},
    "with the separators": {"add": ("separator_ecg", "separator_ppg")},
    "one vote per source (no families)": {"families": False},
    "ECG only": {"kind": "ecg"},
    "ECG only, one vote per source": {"kind": "ecg", "families": False},
    # issue 20, RSA only in a regular rhythm: the heart-rate family's weight times 1 - index / s0 (clipped to
    # 0-1), the index from the ECG's detected beats (rhythm_index); "recording" uses the recording's share
    "rhythm: window marks /0.1": {"rhythm": ("marks", 0.1)},
    "rhythm: window marks /0.03": {"rhythm": ("marks", 0.03)},
    "rhythm: recording marks /0.05": {"rhythm": ("recording", 0.05)},
    "rhythm: window irregular RR /0.2": {"rhythm": ("irregular", 0.2)},
    # what down-weighting the heart-rate family can gain at most: without it
    "without the heart-rate source": {"only": [n for n in source_names(fusion_only=True) if SOURCES[n].family != "ecg_rate"]},
}


def rhythm_index(beat_t: np.ndarray, marked: np.ndarray, n: int, fs: float, how: str) -> np.ndarray:
    """Rhythm irregularity on the sources' grid, shape (n,), 0-1 (share of time).

    ``beat_t``: detected beats (s); ``marked``: Kubios' marks on them (ectopic, extra, long/short).
    ``"marks"``: the share of the surrounding 30 s spent in beat intervals with a marked beat at either
    end; ``"recording"``: the recording's share of marked beats everywhere; ``"irregular"``: the share of
    the surrounding 30 s spent in intervals more than 20 % off the median of the 9 intervals around
    them (a breath moves the heart rate by less).
    """
    from scipy.ndimage import median_filter

    out = np.zeros(n)
    if beat_t.size < 3:
        return out
    if how == "recording":
        return out + float(np.mean(marked))
    rr = np.diff(beat_t)
    if how == "marks":
        bad = marked[1:] | marked[:-1]
    else:
        med = median_filter(rr, 9, mode="nearest")
        bad = np.abs(rr - med) > 0.2 * med
    edges = np.clip(np.round(beat_t * fs).astype(int), 0, n)
    for a, b, v in zip(edges[:-1], edges[1:], bad):
        if v:
            out[a:b] = 1.0
    # the share of the surrounding 30 s (one analysis window) spent in such intervals
    k = round(30 * fs)
    c = np.concatenate([[0.0], np.cumsum(out)])
    i = np.arange(n)
    lo, hi = np.clip(i - k // 2, 0, n), np.clip(i + k // 2, 0, n)
    return (c[hi] - c[lo]) / np.maximum(hi - lo, 1)


def count_adv_rates(w: np.ndarray, fs: float, end_s: float | None, win: float = 60.0) -> np.ndarray:
    """Breaths/min per window by a second, simpler counter (peaks after a 0.1-0.8 Hz band-pass)."""
    from scipy.signal import butter, find_peaks, resample_poly, sosfiltfilt

    w = np.nan_to_num(np.asarray(w, float)[: round(end_s * fs) if end_s else None])
    if fs != 10.0:
        w = resample_poly(w, 10, round(fs)) if float(fs).is_integer() else w
        fs = 10.0
    y = sosfiltfilt(butter(4, [0.1, 0.8], "band", fs=fs, output="sos"), w)
    out = np.full(int(len(y) // (win * fs)), np.nan)
    for k in range(out.size):
        s = y[int(k * win * fs): int((k + 1) * win * fs)]
        peaks = set(find_peaks(s)[0].tolist())
        ext = np.sort(np.concatenate([list(peaks), find_peaks(-s)[0]])).astype(int)
        if ext.size < 4:
            continue
        thr = 0.1 * np.percentile(np.abs(np.diff(s[ext])), 75)
        while ext.size > 3:  # drop the extrema pair with the smallest swing while it is below threshold
            d = np.abs(np.diff(s[ext]))
            i = int(np.argmin(d))
            if d[i] >= thr:
                break
            ext = np.delete(ext, [i, i + 1])
        pk = np.array([e for e in ext if e in peaks])
        if pk.size >= 3:
            out[k] = 60.0 * (pk.size - 1) / ((pk[-1] - pk[0]) / fs)
    return out


def load(split: str, cache: str | None = None) -> list[dict]:
    """Every source of every recording of the split (the library's code), and its thoracic reference.

    ``cache``: a folder where each recording's sources are kept (``NAME.npz``) and read back on the
    next run; it must be emptied when the sources' code changes.
    """
    cfg = tomllib.loads((REPO / "models" / "ecg.toml").read_text())
    held = set(cfg["exclude"])
    files = sorted((DATA / "marsh-edf").glob("*.edf")) + sorted((DATA / "cinc2015-wfdb").glob("*.hea"))
    every = ",".join(source_names("ecg") + source_names("ppg"))
    out, seps = [], {}
    # the beats each input's sources were computed from, kept beside them (kind -> (channel Hz, EcgBeats))
    seen, plain = {}, SignalContext._beats

    def keep(self):
        b = plain(self)
        seen[self.kind] = (self.fs, b)
        return b

    SignalContext._beats = keep
    for f in files:
        name = f.stem
        if (name in held) != (split == "test"):
            continue
        hit = Path(cache) / f"{name}.npz" if cache else None
        if hit is not None and hit.exists():
            z = np.load(hit)
            ref, waves = z["ref"], {k[5:]: z[k] for k in z.files if k.startswith("wave_")}
            beats = {k: z[k] for k in ("beat_t", "beat_art") if k in z.files}
        else:
            rec = read_recording(f)
            seen.clear()
            try:
                ref = load_signal(rec, "thor", None, fs_out=25.0, min_fs=1.0).x
                resp = respiration(rec, ExtractOptions(method=every), seps)
            except Exception as e:  # noqa: BLE001 - a record without a usable reference is skipped, said
                print(f"  skipped {name}: {e}")
                continue
            waves = {n: o.wave for n, o in resp.sources.items()}
            beats = {}
            if "ecg" in seen:  # the ECG's detected beats (s) and Kubios' marks, for the rhythm index
                fs_ch, b = seen["ecg"]
                beats = {"beat_t": np.asarray(b.amplitude_peaks(), float) / fs_ch,
                         "beat_art": np.zeros(len(b.amplitude_peaks()), bool) if b.artefact is None else b.artefact}
            if hit is not None:
                hit.parent.mkdir(parents=True, exist_ok=True)
                np.savez(hit, ref=ref, **beats, **{f"wave_{k}": v for k, v in waves.items()})
        out.append({"name": name, "group": "marsh" if name.startswith("marsh") else "cinc",
                    "end": None if name.startswith("marsh") else 270.0, "ref": ref, "waves": waves, **beats})
    SignalContext._beats = plain
    return out


def score(recs: list[dict], settings: dict) -> dict:
    """MAE per (group, counter), and under ``"windows"`` each recording's per-window absolute errors."""
    settings = dict(settings)
    add = settings.pop("add", ())
    only = settings.pop("only", None)
    by_family = settings.pop("families", True)
    kind = settings.pop("kind", None)
    rhythm = settings.pop("rhythm", None)
    consts = {k: settings.pop(k) for k in list(settings) if k.isupper()}
    saved = {k: getattr(Q, k) for k in consts}
    for k, v in consts.items():
        setattr(Q, k, v)
    res = {"windows": {}}
    try:
        for group in ("marsh", "cinc"):
            for scorer in ("respsep", "count-adv"):
                errs = []
                per = res["windows"].setdefault(f"{group}/{scorer}", {})
                for r in (x for x in recs if x["group"] == group):
                    wanted = only or source_names(kind, fusion_only=True) + list(add)
                    names = [n for n in wanted if n in r["waves"]]
                    if not names:
                        continue
                    fam = source_families(names) if by_family else None
                    scale = None
                    if rhythm and "beat_t" in r:
                        how, s0 = rhythm
                        n_grid = len(r["waves"][names[0]])
                        f = np.clip(1 - rhythm_index(r["beat_t"], r["beat_art"].astype(bool), n_grid, 10.0, how) / s0,
                                    0, 1)
                        scale = {k: f for k, v in source_families(names).items() if v == "ecg_rate"}
                    w = F.fuse({n: r["waves"][n] for n in names}, 10.0, families=fam, scale=scale, **settings).wave
                    if scorer == "respsep":
                        end = r["end"]
                        est = breathing_rate(w[: int(end * 10) if end else None], 10.0).bpm
                        ref = breathing_rate(r["ref"][: int(end * 25) if end else None], 25.0).bpm
                    else:
                        est = count_adv_rates(w, 10.0, r["end"])
                        ref = count_adv_rates(r["ref"], 25.0, r["end"])
                    n = min(est.size, ref.size)
                    ok = np.isfinite(est[:n]) & np.isfinite(ref[:n])
                    errs.append(np.abs(est[:n][ok] - ref[:n][ok]))
                    per[r["name"]] = errs[-1].tolist()
                res[(group, scorer)] = float(np.concatenate(errs).mean())
    finally:
        for k, v in saved.items():
            setattr(Q, k, v)
    return res


COLUMNS = ("marsh/respsep", "marsh/count-adv", "cinc/respsep", "cinc/count-adv")


def bootstrap(a: dict[str, list], b: dict[str, list], n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Window-pooled MAE of ``a`` minus ``b`` (per-recording window errors) and its 95 % record-bootstrap interval."""
    names = sorted(set(a) & set(b))
    ea = [np.asarray(a[k], float) for k in names]
    eb = [np.asarray(b[k], float) for k in names]
    sa, sb = np.array([e.sum() for e in ea]), np.array([e.sum() for e in eb])
    na, nb = np.array([e.size for e in ea]), np.array([e.size for e in eb])
    idx = np.random.default_rng(seed).integers(0, len(names), size=(n, len(names)))
    with np.errstate(invalid="ignore"):
        d = sa[idx].sum(1) / na[idx].sum(1) - sb[idx].sum(1) / nb[idx].sum(1)
    return float(sa.sum() / na.sum() - sb.sum() / nb.sum()), float(np.nanpercentile(d, 2.5)), float(np.nanpercentile(d, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=("dev", "test"), default="dev")
    ap.add_argument("--cache", help="keep each recording's sources here (empty it when the sources change)")
    ap.add_argument("--save", help="write every variant's per-window errors (JSON)")
    ap.add_argument("--against", help="compare with the per-window errors of a saved run (record bootstrap)")
    ap.add_argument("--only", help="comma-separated variants to score (default: all)")
    args = ap.parse_args()
    recs = load(args.split, args.cache)
    print(f"{args.split}: {sum(r['group'] == 'marsh' for r in recs)} MARSH, {sum(r['group'] == 'cinc' for r in recs)} "
          "CinC records; breaths/min MAE vs thoracic, 60-s windows")
    print(f"{'variant':<34}{'MARSH respsep':>15}{'MARSH count-adv':>17}{'CinC respsep':>14}{'CinC count-adv':>16}")
    singles = {f"single: {n}": {"only": [n]} for n in source_names(fusion_only=True)}
    every = {**VARIANTS, **singles}
    if args.only:
        every = {k: v for k, v in every.items() if k in args.only.split(",") or k == "as shipped"}
    saved = json.loads(Path(args.against).read_text()) if args.against else {}
    windows = {}
    for name, settings in every.items():
        s = score(recs, settings)
        windows[name] = s["windows"]
        print(f"{name[:34]:<34}{s[('marsh', 'respsep')]:>15.2f}{s[('marsh', 'count-adv')]:>17.2f}"
              f"{s[('cinc', 'respsep')]:>14.2f}{s[('cinc', 'count-adv')]:>16.2f}", flush=True)
        for label, other in (("vs as shipped", windows["as shipped"] if name != "as shipped" else None),
                             (f"vs {Path(args.against).name if args.against else ''}", saved.get(name))):
            if other:
                cells = []
                for c in COLUMNS:
                    d, lo, hi = bootstrap(s["windows"][c], other[c])
                    cells.append(f"{d:+.2f} [{lo:+.2f},{hi:+.2f}]")
                print(f"  {label[:32]:<32}" + "".join(f"{x:>20}" for x in cells), flush=True)
    if args.save:
        Path(args.save).write_text(json.dumps(windows))
    confidence_split(recs)


def confidence_split(recs: list[dict]) -> None:
    """The shipped fusion's confidence against its error (respsep's counter), per group: MAE of the most
    confident 25/50/75/100 % of windows (``respsep eval``'s curve), of the flagged windows and of the
    others, and the MAE in the windows above and below the median confidence."""
    from resp_sep.evaluate import RecordResult, confidence_curve, window_confidence

    for group in ("marsh", "cinc"):
        results = []
        for r in (x for x in recs if x["group"] == group):
            names = [n for n in source_names(fusion_only=True) if n in r["waves"]]
            if not names:
                continue
            fused = F.fuse({n: r["waves"][n] for n in names}, 10.0, families=source_families(names))
            end = r["end"]
            est = breathing_rate(fused.wave[: int(end * 10) if end else None], 10.0)
            ref = breathing_rate(r["ref"][: int(end * 25) if end else None], 25.0)
            conf, flag = window_confidence(fused, est)
            results.append(RecordResult(r["name"], "", refs={"thor": ref}, methods={"respsep": est},
                                        confidence={"respsep": conf}, flags={"respsep": flag}))
        c = confidence_curve(results, "thor")
        curve = ", ".join(f"top {100 * p['coverage']:.0f}% {p['mae_bpm']:.2f}" for p in c["curve"])
        # the most confident half's MAE over all windows' MAE, with a record-bootstrap interval
        ratios = []
        for idx in np.random.default_rng(0).integers(0, len(results), size=(1000, len(results))):
            b = confidence_curve([results[i] for i in idx], "thor")
            ratios.append(b["curve"][1]["mae_bpm"] / b["curve"][-1]["mae_bpm"])
        print(f"confidence, {group} ({c['n_windows']} windows): {curve}; most confident half / all "
              f"{c['curve'][1]['mae_bpm'] / c['curve'][-1]['mae_bpm']:.2f} [{np.percentile(ratios, 2.5):.2f},"
              f"{np.percentile(ratios, 97.5):.2f}]; flagged {c['flagged']['mae_bpm']:.2f} "
              f"({c['flagged']['n_windows']}), not flagged {c['ok']['mae_bpm']:.2f} ({c['ok']['n_windows']})")


if __name__ == "__main__":
    main()
