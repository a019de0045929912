"""Figures: extraction overview and evaluation plots (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    from resp_sep.writers import atomic_output

    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format=str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else "png")


def plot_extraction(path: str, rec, sig, resp: np.ndarray, resp_fs: float, rates=None, overrides=None,
                    excerpt_s: float = 120.0) -> None:
    """Input, extracted respiration and (when the file has one) a reference channel.

    Shows a ``excerpt_s``-second excerpt from the middle of the recording and, below, the
    breaths/min per window over the whole recording.

    Parameters
    ----------
    path : str
        PNG/PDF/SVG file to write.
    rec : Recording
    sig : LoadedSignal
        The input channel at 200 Hz.
    resp : ndarray, shape (n,)
        Extracted respiration at ``resp_fs`` Hz.
    """
    from resp_sep.channels import detect_roles
    from resp_sep.errors import RespSepError
    from resp_sep.preprocess import load_signal

    plt = _plt()
    dur = len(resp) / resp_fs
    t0 = max(0.0, dur / 2 - excerpt_s / 2)
    t1 = min(dur, t0 + excerpt_s)
    ref = None
    roles = detect_roles(rec.labels, overrides)
    for role in ("thor", "nasal", "abdo"):
        if role in roles:
            try:
                ref = load_signal(rec, role, overrides, fs_out=resp_fs, min_fs=1.0)
                break
            except RespSepError:
                ref = None
    n_rows = 3 + (ref is not None)
    fig, axes = plt.subplots(n_rows, 1, figsize=(11, 2.2 * n_rows), constrained_layout=True)
    a, b = int(t0 * sig.fs), int(t1 * sig.fs)
    axes[0].plot(np.arange(a, b) / sig.fs, sig.x[a:b], lw=0.5, color="0.3")
    axes[0].set_title(f"{rec.path.name}: {sig.label} ({sig.role}) input", loc="left")
    ra, rb = int(t0 * resp_fs), int(t1 * resp_fs)
    axes[1].plot(np.arange(ra, rb) / resp_fs, resp[ra:rb], lw=1.0, color="tab:blue")
    axes[1].set_title("extracted respiration (respsep)", loc="left")
    row = 2
    if ref is not None:
        axes[row].plot(np.arange(ra, min(rb, len(ref.x))) / resp_fs, ref.x[ra:rb], lw=1.0, color="tab:green")
        axes[row].set_title(f"reference: {ref.label} ({ref.role})", loc="left")
        row += 1
    for ax in axes[:row]:
        ax.set_xlim(t0, t1)
    axes[row - 1].set_xlabel("time (s)")
    ax = axes[row]
    if rates is not None and len(rates.bpm):
        from resp_sep.rate import breathing_rate

        mid = (rates.start_s + rates.end_s) / 2
        ax.plot(mid / 60, rates.bpm, "o-", ms=3, color="tab:blue", label="respsep")
        if ref is not None:
            rr = breathing_rate(ref.x, ref.fs, window_s=float(rates.end_s[0] - rates.start_s[0]), kind="reference")
            ax.plot((rr.start_s + rr.end_s) / 2 / 60, rr.bpm, "s-", ms=3, color="tab:green", label=f"reference ({ref.label})")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylabel("breaths/min")
    ax.set_xlabel("time (min)")
    ax.set_title("breathing rate per window", loc="left")
    _save(fig, path)
    plt.close(fig)


def plot_evaluation(path: str, results) -> None:
    """Bland-Altman plot (respsep vs each reference) and breaths/min over time per recording.

    Parameters
    ----------
    path : str
        Figure file (PNG).
    results : list of RecordResult
    """
    plt = _plt()
    refs = sorted({r for res in results for r in res.refs})
    n_rec = min(len(results), 6)
    fig, axes = plt.subplots(1 + n_rec, max(1, len(refs)), figsize=(5.5 * max(1, len(refs)), 3 + 2.2 * n_rec),
                             squeeze=False, constrained_layout=True)
    for j, ref in enumerate(refs):
        ax = axes[0, j]
        means, diffs = [], []
        for res in results:
            if ref in res.refs and "respsep" in res.methods:
                e, r = res.methods["respsep"].bpm, res.refs[ref].bpm
                n = min(len(e), len(r))
                ok = np.isfinite(e[:n]) & np.isfinite(r[:n])
                means.append((e[:n][ok] + r[:n][ok]) / 2)
                diffs.append(e[:n][ok] - r[:n][ok])
        if means:
            m, d = np.concatenate(means), np.concatenate(diffs)
            ax.scatter(m, d, s=8, alpha=0.6)
            if d.size > 1:
                bias, sd = d.mean(), d.std(ddof=1)
                for v, ls in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
                    ax.axhline(v, color="k", ls=ls, lw=0.8)
        ax.set_title(f"Bland-Altman: respsep - {ref}", loc="left")
        ax.set_xlabel("mean (breaths/min)")
        ax.set_ylabel("difference (breaths/min)")
        for i, res in enumerate(results[:n_rec]):
            ax = axes[1 + i, j]
            if ref in res.refs:
                rr = res.refs[ref]
                ax.plot((rr.start_s + rr.end_s) / 2 / 60, rr.bpm, "k.-", label=ref, lw=1)
            for name, w in res.methods.items():
                if name == "respsep" or name.endswith("sarkar2015") or name == "ppg_bandpass":
                    ax.plot((w.start_s + w.end_s) / 2 / 60, w.bpm, ".-", label=name, lw=0.8)
            ax.set_title(_name(res.file), loc="left", fontsize=9)
            ax.set_ylabel("breaths/min")
            ax.legend(fontsize=7)
        axes[-1, j].set_xlabel("time (min)")
    _save(fig, path)
    plt.close(fig)


def _name(p: str) -> str:
    from pathlib import Path

    return Path(p).name
