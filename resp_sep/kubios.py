"""NeuroKit2's Kubios artefact correction of R peaks (Lipponen & Tarvainen 2019), the same beats, faster.

``nk.signal_fixpeaks(peaks, sampling_rate, method="Kubios")`` (what ``nk.ecg_peaks(...,
correct_artifacts=True)`` runs) spends most of its time in Python loops over every beat, twice per
correction round: an 8-h night of ~30,000 beats took ~2.3 s, as long as the rest of R-peak
detection. :func:`fixpeaks_kubios` computes the same thing with those loops as array operations:

* the subspaces ``s12`` and ``s22`` (the larger/smaller of a beat's neighbouring normalised
  interval differences, by the sign of its own) are element-wise ``maximum``/``minimum``;
* the classification walk (Lipponen & Tarvainen's figure 1) visits only the beats whose normalised
  interval difference exceeds 1 (or is undefined), the only ones on which it can act, with the same
  comparisons in the same order;
* the rolling quartiles (over 91 beats) and median (over 11) are pandas' centred rolling
  ``quantile``/``median`` (``min_periods=1``) computed from sorted windows with pandas' arithmetic
  (linear interpolation ``lo + (hi - lo) * fraction``; the mean of the two middle values);
* the correction (delete extra beats, insert missed ones, move ectopic and long/short ones to the
  middle of their neighbours) is NeuroKit2's ``_correct_artifacts``, reproduced here step for step
  (:func:`_correct`) so that extraction does not import NeuroKit2.

``tests/test_kubios.py`` compares it with ``nk.signal_fixpeaks`` on real and artefact-laden beat series.
"""

from __future__ import annotations

import numpy as np

C1, C2, ALPHA, WINDOW, MEDFILT = 0.13, 0.17, 5.2, 91, 11


def fixpeaks_kubios(peaks: np.ndarray, sampling_rate: float) -> np.ndarray:
    """Corrected peaks, as ``nk.signal_fixpeaks(peaks, sampling_rate=..., method="Kubios")[1]``.

    Parameters
    ----------
    peaks : numpy.ndarray of int, shape (n,)
        Peak sample indices, increasing.
    sampling_rate : float
        Their rate (Hz).

    Returns
    -------
    numpy.ndarray, shape (m,)
    """
    peaks = np.asarray(peaks)
    artifacts = _find_artifacts(peaks, sampling_rate)
    clean = _correct(artifacts, peaks)
    n_now = sum(len(v) for v in artifacts.values())
    while True:  # until the number of artefacts stops decreasing, as NeuroKit2's iterative mode
        new = _find_artifacts(clean, sampling_rate)
        n_prev, n_now = n_now, sum(len(v) for v in new.values())
        if n_now >= n_prev:
            break
        clean = _correct(new, clean)
    return clean


def artefact_beats(peaks: np.ndarray, sampling_rate: float) -> np.ndarray:
    """The beats among ``peaks`` that Kubios' classification marks as not a normal beat, as a mask.

    Lipponen & Tarvainen's classification of the detected beats (:func:`_find_artifacts`, the
    first pass of :func:`fixpeaks_kubios`): an *extra* detection (a T wave or noise between two
    beats), a beat with a *long or short* interval, and an *ectopic* beat: NeuroKit2 reports the
    interval pattern of a premature beat and its compensatory pause at the beat that *ends* the
    pause, so the premature beat is the one before it (on a simulated ECG with premature
    ventricular complexes this marks the complexes, tests/test_beats.py). A beat after a *missed*
    one is a real R wave and is not marked (its interval is wrong, not the beat).

    Parameters
    ----------
    peaks : numpy.ndarray of int, shape (n,)
        Detected peak sample indices, increasing.
    sampling_rate : float
        Their rate (Hz).

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
    """
    peaks = np.asarray(peaks)
    out = np.zeros(peaks.size, bool)
    if peaks.size < 3:
        return out
    a = _find_artifacts(peaks, sampling_rate)
    ectopic = np.asarray(a["ectopic"], dtype=int)
    out[ectopic[ectopic > 0] - 1] = True
    for kind in ("extra", "longshort"):
        if a[kind]:
            out[np.asarray(a[kind], dtype=int)] = True
    return out


def _correct(artifacts: dict[str, list[int]], peaks: np.ndarray) -> np.ndarray:
    """NeuroKit2's ``_correct_artifacts``: the same steps, the same arithmetic (tests/test_kubios.py).

    Extra beats are deleted and missed ones inserted first; the other lists' indices follow each
    deletion or insertion; then ectopic and long/short beats move to the middle of their neighbours.
    """
    extra, missed = artifacts["extra"], artifacts["missed"]
    ectopic, longshort = artifacts["ectopic"], artifacts["longshort"]
    if extra:
        peaks = np.delete(peaks.copy(), extra)
        missed, ectopic, longshort = (_shift(extra, v, -1) for v in (missed, ectopic, longshort))
    if missed:
        peaks = _insert_missed(missed, peaks)
        ectopic, longshort = (_shift(missed, v, 1) for v in (ectopic, longshort))
    if ectopic:
        peaks = _move_to_middle(ectopic, peaks)
    if longshort:
        peaks = _move_to_middle(longshort, peaks)
    return peaks


def _shift(source: list[int], update: list[int], step: int) -> list[int]:
    """For each index in ``source``, move the indices of ``update`` above it by ``step`` (then unique, sorted)."""
    if not update:
        return update
    for s in source:
        update = [u + step if u > s else u for u in update]
    return list(np.unique(update))


def _insert_missed(idx: list[int], peaks: np.ndarray) -> np.ndarray:
    i = np.array(idx)
    i = i[(i > 1) & (i < len(peaks))]
    prev, nxt = peaks[[k - 1 for k in i]], peaks[i]
    return np.insert(peaks.copy(), i, prev + (nxt - prev) / 2)


def _move_to_middle(idx: list[int], peaks: np.ndarray) -> np.ndarray:
    i = np.array(idx)
    i = i[(i > 1) & (i < len(peaks) - 1)]
    prev, nxt = peaks[[k - 1 for k in i]], peaks[[k + 1 for k in i]]
    moved = prev + (nxt - prev) / 2
    out = np.concatenate((np.delete(peaks.copy(), i), moved)).astype(int)
    out.sort(kind="mergesort")
    return out


def _find_artifacts(peaks: np.ndarray, sampling_rate: float) -> dict[str, list[int]]:
    """NeuroKit2's ``_find_artifacts`` (same arithmetic, same walk), returning only the artefact indices."""
    rr = np.ediff1d(peaks, to_begin=0) / sampling_rate
    if len(rr) > 1:
        rr[0] = np.mean(rr[1:])
    elif len(rr) == 1:
        rr[0] = 1.0
    drrs = np.ediff1d(rr, to_begin=0)
    if len(drrs) > 1:
        drrs[0] = np.mean(drrs[1:])
    elif len(drrs) == 1:
        drrs[0] = 0.0
    th1 = _threshold(drrs)
    np.divide(drrs, th1, out=drrs, where=th1 != 0)
    drrs[th1 == 0] = np.nan
    pad = np.pad(drrs, 2, "reflect")
    mid, prev, nxt, nxt2 = pad[2:-2], pad[1:-3], pad[3:-1], pad[4:]
    with np.errstate(invalid="ignore"):
        s12 = np.where(mid > 0, np.maximum(prev, nxt), np.where(mid < 0, np.minimum(prev, nxt), 0.0))
        s22 = np.where(mid >= 0, np.minimum(nxt, nxt2), np.where(mid < 0, np.maximum(nxt, nxt2), 0.0))
    medrr = _rolling_order(rr, MEDFILT, (0.5,), median=True)[0]
    mrrs = rr - medrr
    mrrs[mrrs < 0] = mrrs[mrrs < 0] * 2
    th2 = _threshold(mrrs)
    np.divide(mrrs, th2, out=mrrs, where=th2 != 0)
    mrrs[th2 == 0] = np.nan

    d, s1, s2, m = drrs.tolist(), s12.tolist(), s22.tolist(), mrrs.tolist()
    r, med, t2 = rr.tolist(), medrr.tolist(), th2.tolist()
    with np.errstate(invalid="ignore"):
        active = np.flatnonzero(~(np.abs(drrs) <= 1))  # the walk only steps over the others
    extra, missed, ectopic, longshort = [], [], [], []
    n = rr.size
    i = 0
    while i < n - 2:
        if abs(d[i]) <= 1:
            k = int(np.searchsorted(active, i, side="left"))  # next beat the walk acts on
            i = int(active[k]) if k < active.size else n
            continue
        if (d[i] > 1 and s1[i] < (-C1 * d[i] - C2)) or (d[i] < -1 and s1[i] > (-C1 * d[i] + C2)):
            ectopic.append(i)
            i += 1
            continue
        if not (abs(d[i]) > 1 or abs(m[i]) > 3):
            i += 1
            continue
        cands = [i]
        if abs(d[i + 1]) < abs(d[i + 2]):
            cands.append(i + 1)
        for j in cands:
            eq3 = d[j] > 1 and s2[j] < -1
            eq4 = abs(m[j]) > 3
            eq5 = d[j] < -1 and s2[j] > 1
            if not (eq3 or eq4 or eq5):
                i += 1
                continue
            eq6 = abs(r[j] / 2 - med[j]) < t2[j]
            eq7 = abs(r[j] + r[j + 1] - med[j]) < t2[j]
            if eq5 and eq7:
                extra.append(j)
                i += 1
                continue
            if eq3 and eq6:
                missed.append(j)
                i += 1
                continue
            longshort.append(j)
            i += 1
    return {"ectopic": ectopic, "missed": missed, "extra": extra, "longshort": longshort}


#: windows sorted at once by :func:`_rolling_order` (bounds its temporary: rows x window floats)
ROWS = 4096


def _threshold(x: np.ndarray) -> np.ndarray:
    """NeuroKit2's ``_compute_threshold``: ``alpha * (q3 - q1) / 2`` of ``|x|`` over centred windows of 91 beats."""
    q1, q3 = _rolling_order(np.abs(x), WINDOW, (0.25, 0.75))
    return ALPHA * ((q3 - q1) / 2)


def _rolling_order(x: np.ndarray, window: int, qs: tuple[float, ...], median: bool = False) -> list[np.ndarray]:
    """pandas ``Series(x).rolling(window, center=True, min_periods=1).quantile(q)`` for each q (or ``.median()``).

    Windows are cut as pandas cuts them (``h = (window - 1) // 2`` before, the rest after, clipped
    at the ends); each value is computed from the sorted window as pandas computes it: the order
    statistic at ``q * (nobs - 1)``, linearly interpolated ``lo + (hi - lo) * fraction``; the
    median is the middle value or the mean of the two middle ones. ``x`` has no NaN.
    """
    n = x.size
    h = (window - 1) // 2
    outs = [np.empty(n) for _ in qs]

    def value(v: np.ndarray, q: float):  # v sorted along the last axis
        m = v.shape[-1]
        if median:
            return v[..., m // 2] if m % 2 else (v[..., m // 2 - 1] + v[..., m // 2]) / 2
        if m == 1:
            return v[..., 0]
        f = q * (m - 1)
        i = int(f)
        if f == i:
            return v[..., i]
        lo, hi = v[..., i], v[..., i + 1]
        return lo + (hi - lo) * (f - i)

    inner = range(h, n - (window - 1 - h)) if n >= window else range(0)
    if len(inner):
        from numpy.lib.stride_tricks import sliding_window_view

        view = sliding_window_view(x, window)  # row j: the window centred on j + h
        for a in range(0, view.shape[0], ROWS):
            v = np.sort(view[a:a + ROWS], axis=1)
            for out, q in zip(outs, qs):
                out[h + a:h + a + v.shape[0]] = value(v, q)
    for k in (range(n) if not len(inner) else [*range(inner.start), *range(inner.stop, n)]):
        v = np.sort(x[max(0, k - h):min(n, k + window - h)])
        for out, q in zip(outs, qs):
            out[k] = value(v, q)
    return outs
