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
    confidence : dict of str to numpy.ndarray
        Per method made by fusion: each rate window's confidence (0-1), as the ``--rates`` CSV
        reports it (:func:`resp_sep.outputs.rate_table`).
    flags : dict of str to numpy.ndarray of str
        Per method made by fusion: each rate window's fusion flag (``ok``, ``low_confidence``,
        ``disagree``, ``no_source``).
    """

    file: str
    signal: str
    refs: dict[str, RateWindows] = field(default_factory=dict)
    methods: dict[str, RateWindows] = field(default_factory=dict)
    abs_r: dict[tuple[str, str], float] = field(default_factory=dict)
    confidence: dict[str, np.ndarray] = field(default_factory=dict)
    flags: dict[str, np.ndarray] = field(default_factory=dict)


def waveform_abs_r(a: np.ndarray, fs_a: float, b: np.ndarray, fs_b: float) -> float:
    """|Pearson r| of two waveforms band-passed to 0.1-0.7 Hz at 10 Hz (sign-agnostic)."""
    from resp_sep.preprocess import fill_gaps
    from resp_sep.select import breathing_band

    if not (np.isfinite(a).any() and np.isfinite(b).any()):
        return float("nan")
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
    try:  # an empty field is a gap (NaN): respsep writes no number where no source was valid
        data = np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2,
                          converters=lambda v: float(v) if v.strip() else np.nan)
    except ValueError as e:
        raise InputError(f"unreadable CSV ({' '.join(str(e).split())[:120]})", str(p)) from None
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


def evaluate_recording(path: str, *, signal: str = "auto", method: str = "fusion",
                       refs: tuple[str, ...] = ("thor", "nasal"), pred_csv: str | None = None,
                       baselines: bool = False, overrides: dict | None = None, start_s: float = 0.0,
                       end_s: float | None = None, window_s: float = 60.0, ref_annotations: str | None = None,
                       separators: dict | None = None, model: tuple[str, ...] | str | None = (),
                       device: str = "auto") -> RecordResult:
    """Score respsep (and optionally the separator alone and every source) against the references of one recording.

    Parameters
    ----------
    path : str
        Recording with a cardiac channel and at least one reference.
    signal : {"auto", "ecg", "ppg", "both"}
        Inputs used (:mod:`resp_sep.pipeline`).
    method : str
        What ``respsep`` means here: ``fusion`` (default), ``separator`` or source name(s).
    refs : tuple of str
        Reference roles to use when present (``thor``, ``nasal``, ``abdo``).
    pred_csv : str, optional
        Existing ``respsep extract`` output to score instead of extracting.
    baselines : bool
        Also score the fusion, the separator alone and every single source, on the same windows
        (the same code as ``respsep extract --method NAME``).
    start_s, end_s : float
        Part of the recording to score (s from its start), e.g. ``end_s=270`` for CinC records.
    ref_annotations : str, optional
        Use EDF+ annotations whose label contains this text as breath events (an extra reference).
    separators : dict, optional
        Model cache shared across recordings.

    Raises
    ------
    InputError
        No usable reference, no cardiac channel, recording too short.
    """
    from resp_sep.channels import detect_roles
    from resp_sep.io import read_recording
    from resp_sep.preprocess import load_signal

    rec = read_recording(path)
    p = str(rec.path)
    roles = detect_roles(rec.labels, overrides)
    res = RecordResult(file=p, signal=signal)
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

    waves: dict[str, tuple[np.ndarray, float]] = {}
    fusions: dict = {}
    if pred_csv:
        y, fs_y = read_pred_csv(pred_csv)
        waves[METHOD_RESPSEP] = (_crop(y, fs_y, start_s, end_s), fs_y)
    if baselines or not pred_csv:
        got, res.signal = method_waves(rec, method=method, signal=signal, baselines=baselines,
                                       respsep=not pred_csv, overrides=overrides, separators=separators,
                                       model=model, device=device, fusions=fusions)
        waves.update({k: (_crop(w, fs_w, start_s, end_s), fs_w) for k, (w, fs_w) in got.items()})
    for name, (w, fs_w) in waves.items():
        res.methods[name] = breathing_rate(w, fs_w, window_s=window_s, start_s=start_s)
        if name in fusions and not (name == METHOD_RESPSEP and pred_csv):
            res.confidence[name], res.flags[name] = window_confidence(fusions[name], res.methods[name])
        for ref, (rw, rfs) in ref_waves.items():
            res.abs_r[(name, ref)] = waveform_abs_r(w, fs_w, rw, rfs)
    return res


def window_confidence(fusion, rates: RateWindows) -> tuple[np.ndarray, np.ndarray]:
    """Each rate window's confidence and fusion flag, as the ``--rates`` CSV reports them.

    Parameters
    ----------
    fusion : resp_sep.fusion.FusionResult
    rates : RateWindows
        Rate windows (s from the recording's start).

    Returns
    -------
    confidence : numpy.ndarray, shape (n_windows,)
        0-1 (:meth:`~resp_sep.fusion.FusionResult.rate_windows`); 0 where the window has no rate.
    flag : numpy.ndarray of str, shape (n_windows,)
    """
    return fusion.rate_windows(rates.start_s, rates.end_s, rates.quality, np.isfinite(rates.bpm))


def method_waves(rec, *, method: str = "fusion", signal: str = "auto", baselines: bool = False,
                 respsep: bool = True, overrides: dict | None = None, separators: dict | None = None,
                 model: tuple[str, ...] | str | None = (), device: str = "auto",
                 fusions: dict | None = None) -> tuple[dict, str]:
    """Respiration waveforms of one recording by every method to compare (through :mod:`resp_sep.api`).

    Parameters
    ----------
    rec : Recording
    method, signal : str
        What ``respsep`` means (:func:`resp_sep.api.extract`).
    baselines : bool
        Add ``fusion``, ``fusion+separator``, ``separator`` and every single source (computed once,
        fused per method: :func:`resp_sep.api.compare_methods`).
    respsep : bool
        Include ``respsep`` (the method under evaluation).
    fusions : dict, optional
        Filled with ``label -> FusionResult`` for the methods made by fusion (confidence, flags).

    Returns
    -------
    waves : dict
        label -> ``(waveform, fs_hz)``.
    inputs : str
        The inputs used, e.g. ``ecg+ppg``.
    """
    from resp_sep import api

    model = model or ()
    if not baselines:
        res = api.extract(rec, method=method, signal=signal, channel=overrides, model=model, device=device,
                          separators=separators)
        if fusions is not None:
            fusions[METHOD_RESPSEP] = res.respiration.fusion
        return {METHOD_RESPSEP: (res.respiration.wave, res.respiration.fs)}, "+".join(res.respiration.channels)
    # what "respsep" is: the method as extract runs it (a model adds the separators to the fusion)
    under_test = api.FUSION_SEPARATOR if (method == api.FUSION and model) else method
    methods = {METHOD_RESPSEP: under_test} if respsep else {}
    methods.update({api.FUSION: api.FUSION, api.FUSION_SEPARATOR: api.FUSION_SEPARATOR, "separator": "separator"})
    return api.compare_methods(rec, methods, singles=True, signal=signal, channel=overrides, model=model,
                               device=device, separators=separators, fusions=fusions)


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
                         key=lambda m: (_rank(m), m))
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


#: shares of windows (most confident first) at which :func:`confidence_curve` reports the MAE
COVERAGES = (0.25, 0.5, 0.75, 1.0)


def confidence_curve(results: list[RecordResult], ref: str, method: str = METHOD_RESPSEP,
                     coverages: tuple[float, ...] = COVERAGES) -> dict | None:
    """Does the confidence predict the error? MAE of the most confident share of windows, and of the flagged ones.

    The windows both ``method`` and ``ref`` scored, pooled over the recordings, are ranked by the
    method's confidence (highest first; ties in recording and time order); for each share ``c`` of
    them the MAE (breaths/min) of the ``ceil(c * n)`` most confident. A confidence that predicts
    error gives an MAE that rises with the share.

    Returns
    -------
    dict or None
        ``ref``, ``method``, ``n_windows``, ``curve`` (list of ``{"coverage", "n_windows", "mae_bpm",
        "min_confidence"}``), ``flagged`` and ``ok`` (``{"n_windows", "mae_bpm"}`` of the windows
        flagged ``low_confidence`` or ``disagree`` and of the others); None when the method has no
        confidence (not made by fusion, or scored from ``--pred-dir``).
    """
    err, conf, flagged = [], [], []
    for res in results:
        if ref not in res.refs or method not in res.methods or method not in res.confidence:
            continue
        e, r, ok = _paired(res.methods[method], res.refs[ref])
        n = ok.size
        err.append(np.abs(e[ok] - r[ok]))
        conf.append(res.confidence[method][:n][ok])
        flagged.append(np.isin(res.flags[method][:n][ok], ("low_confidence", "disagree")))
    if not err:
        return None
    err, conf, flagged = np.concatenate(err), np.concatenate(conf), np.concatenate(flagged)
    if not err.size:
        return None
    order = np.argsort(-conf, kind="stable")
    curve = []
    for c in coverages:
        k = max(1, int(np.ceil(c * err.size - 1e-9)))
        curve.append({"coverage": float(c), "n_windows": k, "mae_bpm": float(err[order[:k]].mean()),
                      "min_confidence": float(conf[order[k - 1]])})

    def part(m):
        return {"n_windows": int(m.sum()), "mae_bpm": float(err[m].mean()) if m.any() else float("nan")}

    return {"ref": ref, "method": method, "n_windows": int(err.size), "curve": curve,
            "flagged": part(flagged), "ok": part(~flagged)}


def confidence_curves(results: list[RecordResult], method: str = METHOD_RESPSEP) -> list[dict]:
    """:func:`confidence_curve` for every reference (those with a curve)."""
    refs = sorted({r for res in results for r in res.refs})
    return [c for c in (confidence_curve(results, ref, method) for ref in refs) if c is not None]


def _rank(method: str) -> int:
    """Table order: respsep, the fusion, the separator alone, then the single sources."""
    return {METHOD_RESPSEP: 0, "fusion": 1, "fusion+separator": 2, "separator": 3}.get(method, 4)


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


def demo_scores(sim, recording: str, window_s: float = 60.0, separators: dict | None = None,
                model: tuple[str, ...] | str | None = ()) -> list[dict]:
    """Scores of the demo: respsep's default, the separator alone and every source against the true respiration.

    Parameters
    ----------
    sim : Simulation
        From :func:`resp_sep.simulate.simulate` (its ``resp`` at ``fs`` is the truth).
    recording : str
        The simulation written to disk (what ``respsep extract`` reads).

    Returns
    -------
    list of dict
        ``method``, ``mae_bpm``, ``abs_r``, ``coverage`` (``scored/truth windows``), best first
        after ``respsep``.
    """
    from resp_sep.io import read_recording

    truth = breathing_rate(sim.resp, sim.fs, window_s=window_s, kind="reference")
    waves, inputs = method_waves(read_recording(recording), baselines=True, separators=separators, model=model)
    res = RecordResult(file="simulated", signal=inputs, refs={"truth": truth})
    for name, (w, fs_w) in waves.items():
        res.methods[name] = breathing_rate(w, fs_w, window_s=window_s)
        res.abs_r[(name, "truth")] = waveform_abs_r(w, fs_w, sim.resp, sim.fs)
    rows = summarise([res], include_ref_agreement=False)
    out = []
    for r in rows:
        out.append({"method": r["method"], "mae_bpm": r["mae_bpm"], "abs_r": r["abs_r"],
                    "coverage": f"{r['n_windows']}/{int(np.isfinite(truth.bpm).sum())}"})
    return out
