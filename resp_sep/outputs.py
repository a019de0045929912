"""What respsep writes for one recording: the respiration waveform, rates per window (epochs) and breaths.

The tables are built here from a :class:`~resp_sep.pipeline.Respiration` and written all-or-nothing
(:func:`resp_sep.writers.output_set`): the CLI, :func:`resp_sep.extract_batch` and
``Extraction.save`` all go through :func:`write_outputs`, so a file written by any of them holds the
numbers the Python API returns.

Tables
------
waveform (``time_s``, ``resp``)
    The fused respiration (a.u.) at ``out_rate`` Hz, ``time_s`` in s from the recording's start;
    empty (NaN) where no source was valid.
rates (:data:`RATE_COLUMNS`)
    One row per window of ``window_s`` s from the recording's start (0, 30, 60 ... s for 30-s
    sleep epochs): ``breaths_per_min`` (empty where the window has no rate), ``quality`` (0-1,
    how cleanly the breaths of the window could be counted: coverage, regularity, amplitude;
    :mod:`resp_sep.rate`), ``confidence`` (0-1, how far the respiratory sources agree on the
    rate, times that quality: the fusion's agreement x concentration x quality,
    :meth:`resp_sep.fusion.FusionResult.rate_windows`; 0 where there is no rate; the windows
    that are more than 2 breaths/min off are the low ones), ``flag`` (``ok``; ``low_confidence`` or
    ``disagree``, confidence below :data:`resp_sep.fusion.LOW_RATE_CONFIDENCE`; or why there is no rate:
    ``too_few_breaths``, ``poor_quality``, ``flat``, ``nan``) and ``sources`` (the contributing
    sources with their weights). Only whole windows are made: a tail shorter than a window has no
    row (as sleep scorers drop a last partial epoch).
breaths (:data:`BREATH_COLUMNS`)
    One row per breath the rate found: ``onset_s`` (inhalation onset), ``end_s`` (the next onset)
    and ``duration_s`` where the rate counted the cycle (empty before a pause, a gap or the end),
    ``amplitude`` (onset to the next peak, in the waveform's units) and ``confidence`` (of the
    rates window holding the onset; 0 where that window has no rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: rates table columns (the ``--rates`` CSV header)
RATE_COLUMNS = ("start_s", "end_s", "breaths_per_min", "quality", "confidence", "flag", "sources")
#: breaths table columns (the ``--breaths`` CSV header)
BREATH_COLUMNS = ("onset_s", "end_s", "duration_s", "amplitude", "confidence")
#: waveform table columns (the ``--out`` CSV header)
WAVEFORM_COLUMNS = ("time_s", "resp")
#: flags of windows whose rate should be checked (EDF+ annotations, counts in the CLI's report)
CHECK_FLAGS = {"low_confidence": "respsep low confidence", "disagree": "respsep sources disagree"}
#: EDF+ annotation texts
BREATH_ANNOTATION, GAP_ANNOTATION = "breath", "respsep no respiration"
#: weights below this are left out of the ``sources`` column
MIN_SHOWN_WEIGHT = 0.05


@dataclass
class OutputOptions:
    """Output settings of an extraction (the algorithm's are :class:`resp_sep.pipeline.ExtractOptions`).

    Attributes
    ----------
    out_rate : float
        Rate (Hz) of the written and returned waveform.
    window_s : float
        Rate window (s); 30 gives AASM sleep epochs. Windows start at 0 s of the recording.
    fmt : {"csv", "edf"} or None
        Format of the waveform file (None: EDF+ for a ``.edf`` name, else CSV).
    """

    out_rate: float = 25.0
    window_s: float = 60.0
    fmt: str | None = None

    def check(self) -> OutputOptions:
        """Raise :class:`~resp_sep.errors.UsageError` (exit 2) for a value out of range; returns self."""
        from resp_sep.options import EXTRACT_FORMATS, check_choice, check_float

        check_float("--out-rate", self.out_rate, 0.5, 200, unit="Hz")
        check_float("--window", self.window_s, 10, 3600, unit="s")
        self.fmt = "csv" if self.fmt is None else check_choice("--format", self.fmt, EXTRACT_FORMATS)
        return self


@dataclass
class OutputPaths:
    """Where one recording's outputs go (``None``: not written)."""

    out: str | None = None
    rates: str | None = None
    breaths: str | None = None
    plot: str | None = None

    def files(self) -> list[str]:
        """The outputs asked for."""
        return [p for p in (self.out, self.rates, self.breaths, self.plot) if p]


# ------------------------------------------------------------------------------------------ tables


def at_rate(wave: np.ndarray, fs: float, out_fs: float, n_out: int | None = None) -> np.ndarray:
    """``wave`` resampled to ``out_fs`` Hz (anti-aliased), float32, NaN wherever it touches a NaN input sample.

    Gaps are bridged linearly for the filter (a zero fill would ring into the valid samples beside
    them) and set back to NaN afterwards: an output sample is NaN when either input sample around
    its time is NaN, so no number is made up inside or at the edge of a gap.
    """
    from resp_sep.preprocess import fill_gaps, resample
    from resp_sep.sources import fit_length

    wave = np.asarray(wave, dtype=np.float64)
    bad = ~np.isfinite(wave)
    x = wave if not bad.any() else np.zeros_like(wave) if bad.all() else fill_gaps(wave)
    y = resample(x, fs, out_fs) if out_fs != fs else np.array(x, dtype=np.float64)
    if n_out is not None:
        y = fit_length(y, n_out)
    out = y.astype(np.float32)
    del y
    if bad.any():  # a chunk of output samples at a time (bounded temporaries)
        for a in range(0, out.size, 1 << 18):
            t = np.arange(a, min(out.size, a + (1 << 18))) * (fs / out_fs)
            i0 = np.clip(np.floor(t).astype(int), 0, bad.size - 1)
            i1 = np.clip(np.ceil(t).astype(int), 0, bad.size - 1)
            out[a:a + t.size][bad[i0] | bad[i1]] = np.nan
    return out


def rate_table(resp, window_s: float = 60.0):
    """Rates per window of a :class:`~resp_sep.pipeline.Respiration`, with the fusion's confidence, flag and sources.

    Parameters
    ----------
    resp : Respiration
    window_s : float
        Window (s); windows start at 0 s and cover the recording (``resp.duration_s``).

    Returns
    -------
    rates : RateWindows
        :func:`resp_sep.rate.breathing_rate` of the fused waveform (breath events included).
    rows : list of dict
        One per window with the keys of :data:`RATE_COLUMNS` (module docstring); ``confidence``
        and ``flag`` (``ok``, ``low_confidence``, ``disagree``) are the fusion's
        (:meth:`~resp_sep.fusion.FusionResult.rate_windows`) where there is a rate; elsewhere
        ``flag`` is the rate's reason and ``confidence`` is 0.
    """
    from resp_sep.parallel import release_memory
    from resp_sep.rate import breathing_rate

    release_memory()  # freed temporaries back to the system before the rate function's own (48 h: 35 MB each)
    r = breathing_rate(resp.wave, resp.fs, window_s=window_s, duration_s=resp.duration_s or None)
    conf, flag = resp.fusion.rate_windows(r.start_s, r.end_s, r.quality, np.isfinite(r.bpm))
    rows = []
    for k in range(len(r)):
        a, e = float(r.start_s[k]), float(r.end_s[k])
        s = resp.fusion.window_summary(a, e)
        scored = bool(np.isfinite(r.bpm[k]))
        w = sorted(((v, n) for n, v in s["weights"].items() if v >= MIN_SHOWN_WEIGHT), reverse=True)
        rows.append({"start_s": a, "end_s": e, "breaths_per_min": float(r.bpm[k]),
                     "quality": float(r.quality[k]), "confidence": float(conf[k]),
                     "flag": str(flag[k]) if scored else str(r.flag[k]),
                     "sources": ";".join(f"{n}:{v:.2f}" for v, n in w)})
    return r, rows


def breath_table(rates, rows: list[dict], resp, window_s: float) -> dict[str, np.ndarray]:
    """The breaths the rate found, one per row (columns :data:`BREATH_COLUMNS`, arrays of shape (n_breaths,)).

    A breath is an inhalation onset the rate detected (:func:`resp_sep.rate.breathing_rate`),
    except ripples (smaller than :data:`resp_sep.rate.MIN_REL_AMPLITUDE` of the recording's median
    breath, which the rate does not count either). ``end_s`` (the next onset) and ``duration_s``
    are known where the rate counted the cycle (1-15 s, no unusable sample); NaN where it did not:
    before a pause, a gap or the end of the recording. ``confidence`` is that of the rates window
    holding the onset (``rows``); a breath in the tail after the last whole window gets the
    fusion's confidence over that tail.
    """
    from resp_sep.rate import MIN_REL_AMPLITUDE

    t = np.asarray(rates.breath_times_s, dtype=float)
    n = t.size
    counted = np.zeros(n, bool)
    c = np.asarray(rates.breath_counted, dtype=bool)[: max(n - 1, 0)]
    counted[: c.size] = c
    amp = np.asarray(rates.breath_amplitude, dtype=float)
    amp = amp[:n] if amp.size >= n else np.full(n, np.nan)
    keep = np.ones(n, bool)
    if counted.any() and np.isfinite(amp[counted]).all():
        ref = float(np.median(np.abs(amp[counted])))
        keep = ~(np.abs(amp) < MIN_REL_AMPLITUDE * ref)  # ripples in a pause or in noise are not breaths
    nxt = np.append(t[1:], np.nan)
    end = np.where(counted, nxt, np.nan)[keep]
    onset, amp = t[keep], amp[keep]
    conf_w = np.array([r["confidence"] for r in rows], dtype=float)
    w = np.floor(onset / window_s + 1e-9).astype(int)
    conf = np.zeros(onset.size)
    inside = (w >= 0) & (w < conf_w.size)
    conf[inside] = conf_w[w[inside]]
    if (~inside).any():  # the tail after the last whole window
        tail0 = conf_w.size * window_s
        conf[~inside] = resp.fusion.window_summary(tail0, max(resp.duration_s, tail0 + 1e-6))["confidence"]
    return {"onset_s": onset, "end_s": end, "duration_s": end - onset, "amplitude": amp, "confidence": conf}


def edf_annotations(breaths: dict[str, np.ndarray], rows: list[dict], wave: np.ndarray,
                    fs: float) -> list[tuple[float, float, str]]:
    """EDF+ annotations ``(onset_s, duration_s, text)``: breath onsets, windows to check, gaps.

    Breaths are instants (:data:`BREATH_ANNOTATION`); runs of consecutive rate windows flagged
    ``low_confidence`` or ``disagree`` are one annotation each, lasting the run
    (:data:`CHECK_FLAGS`); runs of NaN in the respiration (no valid source) are
    :data:`GAP_ANNOTATION` with their duration (the EDF signal holds 0 there: EDF has no NaN).
    Sorted by onset.
    """
    ann = [(float(o), 0.0, BREATH_ANNOTATION) for o in breaths["onset_s"]]
    k = 0
    while k < len(rows):
        f = rows[k]["flag"]
        j = k
        while j + 1 < len(rows) and rows[j + 1]["flag"] == f and rows[j + 1]["start_s"] <= rows[j]["end_s"] + 1e-6:
            j += 1
        if f in CHECK_FLAGS:
            ann.append((rows[k]["start_s"], rows[j]["end_s"] - rows[k]["start_s"], CHECK_FLAGS[f]))
        k = j + 1
    bad = ~np.isfinite(np.asarray(wave, dtype=float))
    if bad.any():
        edges = np.diff(np.concatenate(([0], bad.view(np.int8), [0])))
        first, last = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        ann += [(a / fs, (b - a) / fs, GAP_ANNOTATION) for a, b in zip(first, last)]
    return sorted(ann, key=lambda a: a[0])


def summary(rates, rows: list[dict]) -> dict:
    """Per-recording numbers for reports: windows scored, median breaths/min and confidence, flags to check."""
    bpm = np.asarray(rates.bpm, dtype=float)
    ok = np.isfinite(bpm)
    conf = np.array([r["confidence"] for r in rows], dtype=float)
    return {"windows": int(bpm.size), "windows_scored": int(ok.sum()),
            "median_bpm": float(np.median(bpm[ok])) if ok.any() else None,
            "median_confidence": float(np.median(conf[ok])) if ok.any() else None,
            "low_confidence": int(sum(r["flag"] == "low_confidence" for r in rows)),
            "disagree": int(sum(r["flag"] == "disagree" for r in rows))}


# ------------------------------------------------------------------------------------------ files


def write_rates_csv(path, rows: list[dict]) -> None:
    """The rates table (:data:`RATE_COLUMNS`) as CSV, atomically; a window without a rate has an empty ``breaths_per_min``."""
    import csv
    import io

    from resp_sep.writers import atomic_output

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RATE_COLUMNS)
    for r in rows:
        bpm = r["breaths_per_min"]
        w.writerow([f"{r['start_s']:.2f}", f"{r['end_s']:.2f}", f"{bpm:.3f}" if np.isfinite(bpm) else "",
                    f"{r['quality']:.3f}", f"{r['confidence']:.3f}", r["flag"], r["sources"]])
    with atomic_output(path) as tmp:
        tmp.write_text(buf.getvalue())


def write_breaths_csv(path, breaths: dict[str, np.ndarray]) -> None:
    """The breaths table (:data:`BREATH_COLUMNS`) as CSV, atomically (an unknown end, duration or amplitude is empty)."""
    from resp_sep.writers import write_csv

    write_csv(path, list(BREATH_COLUMNS), [np.asarray(breaths[c], dtype=float) for c in BREATH_COLUMNS],
              ["%.3f", "%.3f", "%.3f", "%.4g", "%.3f"], na_rep="")


def write_waveform(path, time_s, resp: np.ndarray, fmt: str, out_rate: float,
                   annotations=None, start_time=None) -> None:
    """The respiration as CSV (``time_s,resp``; empty where NaN) or EDF+ (0 where NaN, with ``annotations``).

    ``time_s`` may be ``None``: the sample times ``k / out_rate``, made as they are written.
    """
    from resp_sep.writers import Ramp, write_csv, write_edf

    if fmt == "edf":
        write_edf(path, [{"label": "Resp respsep", "fs": out_rate, "unit": "a.u.", "data": np.nan_to_num(resp)}],
                  annotations=annotations, start_time=start_time)
    else:
        t = Ramp(resp.size, out_rate) if time_s is None else time_s
        write_csv(path, list(WAVEFORM_COLUMNS), [t, resp], ["%.4f", "%.6g"], na_rep="")


def write_outputs(result, paths: OutputPaths) -> dict:
    """Write one recording's outputs all-or-nothing (temporary files renamed together when all succeeded).

    Parameters
    ----------
    result : resp_sep.api.Extraction
    paths : OutputPaths

    Returns
    -------
    dict
        ``{"out": ..., "rates": ..., "breaths": ..., "plot": ...}`` of the files written.
    """
    from resp_sep.writers import output_set

    o = result.output
    result.rate_rows  # the rates first, while the least else is held (their temporaries are the largest)
    with output_set() as outs:
        if paths.out:
            ann = None
            if o.fmt == "edf":
                ann = edf_annotations(result.breath_arrays, result.rate_rows, result.respiration.wave,
                                      result.respiration.fs)
            from resp_sep.parallel import release_memory

            release_memory()  # the fusion's and rates' temporaries, before the output's own
            write_waveform(outs.path(paths.out), None, result.resp, o.fmt, o.out_rate, ann,
                           result.recording.start_time)
        if paths.rates:
            write_rates_csv(outs.path(paths.rates), result.rate_rows)
        if paths.breaths:
            write_breaths_csv(outs.path(paths.breaths), result.breath_arrays)
        if paths.plot:
            from resp_sep.plots import plot_extraction

            plot_extraction(outs.path(paths.plot), result.recording, result.respiration, result.rate_windows,
                            result.options.channel, rows=result.rate_rows)
    return {k: v for k, v in (("out", paths.out), ("rates", paths.rates), ("breaths", paths.breaths),
                              ("plot", paths.plot)) if v}
