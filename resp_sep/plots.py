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
        mid = (rates.start_s + rates.end_s) / 2
        ax.plot(mid / 60, rates.bpm, "o-", ms=3, color="tab:blue", label="respsep")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylabel("breaths/min")
    ax.set_xlabel("time (min)")
    ax.set_title("breathing rate per window", loc="left")
    _save(fig, path)
    plt.close(fig)
