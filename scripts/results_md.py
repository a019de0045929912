"""Turn the JSON reports of scripts/results.sh into the markdown tables of docs/results.md.

Usage: python scripts/results_md.py runs/results > runs/results/tables.md
"""

import json
import math
import sys
from pathlib import Path

TITLES = {
    "marsh": "MARSH, ECG + PPG (7 held-out subjects)",
    "cinc": "CinC 2015, ECG lead II + PPG (20 held-out records, first 270 s)",
}


def f(v, d=2):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def main(folder: str) -> None:
    for name, title in TITLES.items():
        p = Path(folder) / f"{name}.json"
        if not p.exists():
            continue
        rep = json.loads(p.read_text())
        print(f"### {title}\n")
        if rep.get("failed"):
            print(f"{rep['n_records']} recordings scored; not scored: "
                  + "; ".join(x["error"] for x in rep["failed"]) + "\n")
        for ref in sorted({r["ref"] for r in rep["pooled"]}):
            rows = [r for r in rep["pooled"] if r["ref"] == ref]
            print(f"Reference **{ref}**\n")
            print("| method | MAE | MAE on common windows | windows | coverage | bias | 95% limits | waveform abs r |")
            print("|---|---|---|---|---|---|---|---|")
            for r in rows:
                m = f"**{r['method']}**" if r["method"] in ("respsep", "fusion") else r["method"]
                cov = "–" if r["coverage"] is None or math.isnan(r["coverage"]) else f"{100 * r['coverage']:.0f}%"
                print(f"| {m} | {f(r['mae_bpm'])} | {f(r['mae_common_bpm'])} | {r['n_windows']} | {cov} | "
                      f"{f(r['bias_bpm'])} | {f(r['loa_low'], 1)} .. {f(r['loa_high'], 1)} | {f(r['abs_r'])} |")
            print()
        for c in rep.get("confidence", []):
            print(f"Confidence vs error, **{c['method']}** against **{c['ref']}** ({c['n_windows']} windows): MAE of "
                  "the most confident share of windows, and of the windows flagged `low_confidence` or `disagree`\n")
            print("| | " + " | ".join(f"top {100 * p['coverage']:.0f} %" for p in c["curve"]) + " | flagged | not flagged |")
            print("|---" * (len(c["curve"]) + 3) + "|")
            print("| MAE | " + " | ".join(f(p["mae_bpm"]) for p in c["curve"])
                  + f" | {f(c['flagged']['mae_bpm'])} | {f(c['ok']['mae_bpm'])} |")
            print("| windows | " + " | ".join(str(p["n_windows"]) for p in c["curve"])
                  + f" | {c['flagged']['n_windows']} | {c['ok']['n_windows']} |")
            print()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/results")
