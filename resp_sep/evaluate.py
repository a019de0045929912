"""Evaluation: breaths/min agreement of extracted respiration and heuristic baselines with references.

Every method (respsep's output, each heuristic) and every reference (thoracic, nasal, hand-marked
breath annotations) goes through the same rate function (:func:`resp_sep.rate.breathing_rate`,
60-s windows on one grid), so they are compared window by window. A window counts for a method
when both the method and the reference score it; ``coverage`` says what fraction of the
reference-scored windows the method scored. ``mae_common`` is the MAE over the windows that
*every* method scored, for a like-for-like ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resp_sep.errors import InputError, RespSepError
from resp_sep.rate import RateWindows, breathing_rate, rate_from_breath_times

METHOD_RESPSEP = "respsep"


@dataclass
class RecordResult:
    """Scores of one recording.

    Attributes
    ----------
    file : str
    signal : str
        ``ecg`` or ``ppg``.
    refs : dict of str to RateWindows
        Reference rates per reference name (``thor``, ``nasal``, ``annotations:LABEL``).
    methods : dict of str to RateWindows
        Rates per method on the same window grid.
    abs_r : dict of (method, ref) to float
        |Pearson r| between band-passed waveforms (NaN for annotation references).
    """

    file: str
    signal: str
    refs: dict[str, RateWindows] = field(default_factory=dict)
    methods: dict[str, RateWindows] = field(default_factory=dict)
    abs_r: dict[tuple[str, str], float] = field(default_factory=dict)


def waveform_abs_r(a: np.ndarray, fs_a: float, b: np.ndarray, fs_b: float) -> float:
    """|Pearson r| of two waveforms band-passed to 0.1-0.7 Hz at 10 Hz (sign-agnostic)."""
    from resp_sep.preprocess import fill_gaps
    from resp_sep.select import breathing_band

    x, y = breathing_band(fill_gaps(a), fs_a), breathing_band(fill_gaps(b), fs_b)
    n = min(len(x), len(y))
    if n < 10 or x[:n].std() == 0 or y[:n].std() == 0:
        return float("nan")
    return float(abs(np.corrcoef(x[:n], y[:n])[0, 1]))


def read_pred_csv(path: str | Path) -> tuple[np.ndarray, float]:
    """Read a ``time_s,resp`` CSV written by ``respsep extract``.

    Returns
    -------
    (resp, fs) : ndarray of shape (n,), float Hz

    Raises
    ------
    InputError
        Missing file, wrong header, too few rows or irregular time stamps.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("prediction file not found", str(p))
    with open(p) as fh:
        header = fh.readline().strip()
    if header != "time_s,resp":
        raise InputError(f"expected header 'time_s,resp', found '{header[:40]}'", str(p))
    try:
        data = np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as e:
        raise InputError(f"unreadable CSV ({e})", str(p)) from None
    if data.shape[0] < 10 or data.shape[1] != 2:
        raise InputError("too few rows", str(p))
    dt = np.diff(data[:, 0])
    if not np.allclose(dt, dt[0], rtol=1e-3, atol=1e-4) or dt[0] <= 0:
        raise InputError("time_s is not evenly spaced", str(p))
    return data[:, 1], float(1.0 / dt[0])


def _crop(x: np.ndarray, fs: float, start_s: float, end_s: float | None) -> np.ndarray:
    a = int(round(start_s * fs))
    b = len(x) if end_s is None else min(len(x), int(round(end_s * fs)))
    return x[a:b]


def evaluate_recording(path: str, *, signal: str = "auto", refs: tuple[str, ...] = ("thor", "nasal"),
                       separator=None, pred_csv: str | None = None, baselines: bool = False,
                       overrides: dict | None = None, start_s: float = 0.0, end_s: float | None = None,
                       window_s: float = 60.0, ref_annotations: str | None = None,
                       separators: dict | None = None, model: str | None = None, device: str = "auto") -> RecordResult:
    """Score respsep (and optionally the heuristics) against the references of one recording.

    Parameters
    ----------
    path : str
        Recording with the cardiac channel and at least one reference.
    signal : {"auto", "ecg", "ppg"}
    refs : tuple of str
        Reference roles to use when present (``thor``, ``nasal``, ``abdo``).
    separator : Separator, optional
        Used to extract when ``pred_csv`` is not given (loaded from ``model`` otherwise).
    pred_csv : str, optional
        Existing ``respsep extract`` output to score instead of extracting.
    baselines : bool
        Add the heuristic baselines (:mod:`resp_sep.baselines`) on the same windows.
    start_s, end_s : float
        Part of the recording to score (s from its start), e.g. ``end_s=270`` for CinC records.
    ref_annotations : str, optional
        Use EDF+ annotations whose label contains this text as breath events (an extra reference).

    Raises
    ------
    InputError
        No usable reference, no cardiac channel, recording too short.
    """
    from resp_sep.baselines import all_baselines
    from resp_sep.channels import detect_roles
    from resp_sep.io import read_recording
    from resp_sep.preprocess import MODEL_FS, load_signal
    from resp_sep.separate import Separator, choose_signal

    rec = read_recording(path)
    p = str(rec.path)
    sig_role = choose_signal(rec.labels, signal, overrides, p)
    roles = detect_roles(rec.labels, overrides)
    res = RecordResult(file=p, signal=sig_role)
    ref_waves: dict[str, tuple[np.ndarray, float]] = {}
    unusable: list[str] = []  # why a present reference could not be used: the user needs the reason
    for role in refs:
        if role not in roles:
            continue
        try:
            r = load_signal(rec, role, overrides, fs_out=25.0, min_fs=1.0)
        except RespSepError as e:
            unusable.append(f"{role}: {e.problem}")
            continue
        x = _crop(r.x, 25.0, start_s, end_s)
        res.refs[role] = breathing_rate(x, 25.0, window_s=window_s, start_s=start_s, kind="reference")
        ref_waves[role] = (x, 25.0)
    if ref_annotations:
        times = np.array([a.onset_s for a in rec.annotations if ref_annotations.lower() in a.label.lower()])
        if times.size:
            dur = (end_s if end_s is not None else rec.duration_s) - start_s
            res.refs[f"annotations:{ref_annotations}"] = rate_from_breath_times(
                times[(times >= start_s)], dur, window_s, start_s=start_s)
    if not res.refs:
        if unusable:
            raise InputError(f"no usable reference ({'; '.join(unusable)})", p)
        raise InputError(f"no usable reference ({', '.join(refs)}) in this recording", p)

    cardiac = load_signal(rec, sig_role, overrides)  # 200 Hz
    x = _crop(cardiac.x, MODEL_FS, start_s, end_s)
    if pred_csv:
        y, fs_y = read_pred_csv(pred_csv)
        y = _crop(y, fs_y, start_s, end_s)
    else:
        if separator is None:
            separators = {} if separators is None else separators
            if sig_role not in separators:
                separators[sig_role] = Separator.from_checkpoint(model, sig_role, device)
            separator = separators[sig_role]
        y, fs_y = separator.extract(cardiac.x, MODEL_FS, path=p), 25.0
        y = _crop(y, fs_y, start_s, end_s)
    waves = {METHOD_RESPSEP: (y, fs_y)}
    if baselines:
        try:
            waves.update(all_baselines(x, MODEL_FS, kind=sig_role))
        except RespSepError:
            pass  # no beats found: the heuristics score nothing here, respsep still does
    for name, (w, fs_w) in waves.items():
        res.methods[name] = breathing_rate(w, fs_w, window_s=window_s, start_s=start_s)
        for ref, (rw, rfs) in ref_waves.items():
            res.abs_r[(name, ref)] = waveform_abs_r(w, fs_w, rw, rfs)
    return res


def _paired(est: RateWindows, ref: RateWindows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = min(len(est.bpm), len(ref.bpm))
    e, r = est.bpm[:n], ref.bpm[:n]
    ok = np.isfinite(e) & np.isfinite(r)
    return e, r, ok


def summarise(results: list[RecordResult], include_ref_agreement: bool = True) -> list[dict]:
    """Pooled statistics per (reference, method) over all windows of all recordings.

    Returns
    -------
    list of dict
        ``ref``, ``method``, ``mae_bpm``, ``mae_common_bpm``, ``n_windows``, ``coverage``,
        ``bias_bpm`` (method - reference), ``loa_low``/``loa_high`` (95 % limits of agreement),
        ``abs_r`` (median over recordings), ``n_records`` and ``per_record`` MAEs.
    """
    rows = []
    ref_names = sorted({r for res in results for r in res.refs})
    for ref in ref_names:
        methods = sorted({m for res in results if ref in res.refs for m in res.methods},
                         key=lambda m: (m != METHOD_RESPSEP, m))
        # windows every method scored (like-for-like)
        common_mask = {}
        for res in results:
            if ref not in res.refs:
                continue
            masks = [_paired(res.methods[m], res.refs[ref])[2] for m in methods if m in res.methods]
            common_mask[res.file] = np.logical_and.reduce(masks) if masks else None
        for m in methods:
            errs, diffs, common, per_rec, rs = [], [], [], {}, []
            n_ref = 0
            for res in results:
                if ref not in res.refs or m not in res.methods:
                    continue
                e, r, ok = _paired(res.methods[m], res.refs[ref])
                n_ref += int(np.isfinite(r).sum())
                d = e[ok] - r[ok]
                diffs.append(d)
                errs.append(np.abs(d))
                cm = common_mask.get(res.file)
                if cm is not None:
                    common.append(np.abs(e[cm] - r[cm]))
                per_rec[Path(res.file).name] = float(np.mean(np.abs(d))) if d.size else float("nan")
                rs.append(res.abs_r.get((m, ref), float("nan")))
            rows.append(_stats(ref, m, errs, diffs, common, n_ref, per_rec, rs))
        if include_ref_agreement:
            others = [o for o in ref_names if o != ref and not o.startswith("annotations") and not ref.startswith("annotations")]
            for o in others:
                errs, diffs, per_rec, n_ref = [], [], {}, 0
                for res in results:
                    if ref in res.refs and o in res.refs:
                        e, r, ok = _paired(res.refs[o], res.refs[ref])
                        n_ref += int(np.isfinite(r).sum())
                        d = e[ok] - r[ok]
                        diffs.append(d)
                        errs.append(np.abs(d))
                        per_rec[Path(res.file).name] = float(np.mean(np.abs(d))) if d.size else float("nan")
                if errs:
                    rows.append(_stats(ref, f"reference:{o}", errs, diffs, [], n_ref, per_rec, []))
    return rows


def _stats(ref, method, errs, diffs, common, n_ref, per_rec, rs) -> dict:
    e = np.concatenate(errs) if errs else np.zeros(0)
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    c = np.concatenate(common) if common else np.zeros(0)
    sd = float(d.std(ddof=1)) if d.size > 1 else float("nan")
    bias = float(d.mean()) if d.size else float("nan")
    rs = [r for r in rs if np.isfinite(r)]
    return {"ref": ref, "method": method,
            "mae_bpm": float(e.mean()) if e.size else float("nan"),
            "mae_common_bpm": float(c.mean()) if c.size else float("nan"),
            "n_windows": int(e.size), "coverage": float(e.size / n_ref) if n_ref else float("nan"),
            "bias_bpm": bias, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd,
            "abs_r": float(np.median(rs)) if rs else float("nan"), "n_records": len(per_rec),
            "per_record": per_rec}


def demo_scores(sim, pred_csv: str, window_s: float = 60.0) -> list[dict]:
    """Scores of the demo: respsep and the ECG heuristics against a simulation's true respiration.

    Parameters
    ----------
    sim : Simulation
        From :func:`resp_sep.simulate.simulate` (has ``resp``, ``ecg``, ``fs``).
    pred_csv : str
        The extracted respiration (``time_s,resp``).
    """
    from resp_sep.baselines import all_baselines

    truth = breathing_rate(sim.resp, sim.fs, window_s=window_s, kind="reference")
    y, fs_y = read_pred_csv(pred_csv)
    waves = {METHOD_RESPSEP: (y, fs_y)}
    try:
        waves.update(all_baselines(np.asarray(sim.ecg, dtype=float), sim.fs, kind="ecg"))
    except RespSepError:
        pass
    res = RecordResult(file="simulated", signal="ecg", refs={"truth": truth})
    for name, (w, fs_w) in waves.items():
        res.methods[name] = breathing_rate(w, fs_w, window_s=window_s)
        res.abs_r[(name, "truth")] = waveform_abs_r(w, fs_w, sim.resp, sim.fs)
    rows = summarise([res], include_ref_agreement=False)
    out = []
    for r in rows:
        out.append({"method": r["method"], "mae_bpm": r["mae_bpm"], "abs_r": r["abs_r"],
                    "coverage": f"{r['n_windows']}/{int(np.isfinite(truth.bpm).sum())}"})
    return out
