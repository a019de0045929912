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


def plot_extraction(path: str, rec, resp, rates=None, overrides=None, excerpt_s: float = 120.0,
                    rows: list[dict] | None = None) -> None:
    """Sources, their fusion weights and the fused respiration over time, with a reference when the file has one.

    Rows: (1) a ``excerpt_s``-second excerpt from the middle: the fused respiration, the three
    heaviest sources (thin, scaled like it) and the reference; (2) the fusion weight of each
    source per analysis window over the whole recording; (3) breaths/min per window: respsep
    (windows flagged ``low_confidence`` as open circles, ``disagree`` as open triangles) and the
    reference.

    Parameters
    ----------
    path : str
        PNG/PDF/SVG file to write.
    rec : Recording
    resp : resp_sep.pipeline.Respiration
    rates : RateWindows, optional
        Breaths/min of ``resp`` per window.
    rows : list of dict, optional
        The rates table (:func:`resp_sep.outputs.rate_table`) whose flags mark the windows.
    """
    from resp_sep.channels import detect_roles
    from resp_sep.errors import RespSepError
    from resp_sep.preprocess import load_signal

    plt = _plt()
    fs = resp.fs
    fu = resp.fusion
    dur = len(resp.wave) / fs
    t0 = max(0.0, dur / 2 - excerpt_s / 2)
    t1 = min(dur, t0 + excerpt_s)
    ref = None
    roles = detect_roles(rec.labels, overrides)
    for role in ("thor", "nasal", "abdo"):
        if role in roles:
            try:
                ref = load_signal(rec, role, overrides, fs_out=fs, min_fs=1.0)
                break
            except RespSepError:
                ref = None
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), constrained_layout=True)
    a, b = int(t0 * fs), int(t1 * fs)
    t = np.arange(a, b) / fs

    def z(x):
        x = np.asarray(x[a:b], dtype=float)
        sd = np.nanstd(x)
        return (x - np.nanmean(x)) / sd if sd > 0 else x

    ax = axes[0]
    mean_w = fu.weights.mean(axis=0) if len(fu.weights) else np.zeros(len(fu.names))
    for k in np.argsort(-mean_w)[:3]:
        name = fu.names[k]
        if name in resp.sources and len(fu.names) > 1:
            w = z(resp.sources[name].wave)
            sign = np.sign(np.nansum(w * z(resp.wave))) or 1.0
            ax.plot(t, sign * w, lw=0.6, alpha=0.6, label=f"{name} (w {mean_w[k]:.2f})")
    ax.plot(t, z(resp.wave), lw=1.6, color="tab:blue", label=f"respsep ({resp.method})")
    if ref is not None:
        ax.plot(t[: max(0, min(b, len(ref.x)) - a)], z(ref.x)[: max(0, min(b, len(ref.x)) - a)], lw=1.2,
                color="tab:green", label=f"reference: {ref.label}")
    ax.set_xlim(t0, t1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("z-score")
    ax.legend(loc="upper right", fontsize=7, ncol=2)
    ax.set_title(f"{rec.path.name}: {', '.join(f'{k.upper()} {v}' for k, v in resp.channels.items())}", loc="left")

    ax = axes[1]
    mid = (fu.start_s + fu.end_s) / 2 / 60
    if len(fu.names) > 1 and len(mid):
        ax.stackplot(mid, fu.weights.T, labels=fu.names, alpha=0.85)
        ax.legend(loc="upper right", fontsize=7, ncol=3)
    else:
        ax.plot(mid, fu.quality[:, 0] if len(mid) else [], color="tab:blue", label="quality")
    ax.set_ylim(0, 1)
    ax.set_ylabel("fusion weight")
    ax.set_xlabel("time (min)")
    ax.set_title("source weights per analysis window (quality x agreement)", loc="left")

    ax = axes[2]
    if rates is not None and len(rates.bpm):
        from resp_sep.rate import breathing_rate

        mid = (rates.start_s + rates.end_s) / 2 / 60
        if rows is None:
            from resp_sep.outputs import rate_table

            rows = rate_table(resp, float(rates.end_s[0] - rates.start_s[0]))[1]
        flag = np.array([r["flag"] for r in rows])
        low, dis = flag == "low_confidence", flag == "disagree"
        ax.plot(mid, rates.bpm, "-", color="tab:blue", lw=1)
        ax.plot(mid[~low & ~dis], rates.bpm[~low & ~dis], "o", ms=4, color="tab:blue", label="respsep")
        if low.any():
            ax.plot(mid[low], rates.bpm[low], "o", ms=5, mfc="none", color="tab:blue", label="respsep, low confidence")
        if dis.any():
            ax.plot(mid[dis], rates.bpm[dis], "^", ms=5, mfc="none", color="tab:red", label="respsep, sources disagree")
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
                if name in ("respsep", "fusion", "separator") or name.endswith("sarkar2015"):
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
