"""Fusion of respiratory sources into one respiration waveform, window by window.

No single ECG/PPG modulation carries breathing best for every subject, device or minute (Charlton
et al., Physiol. Meas. 2016; Karlen et al., IEEE TBME 2013, whose "smart fusion" combines the rates
of three PPG modulations only when they agree). respsep fuses the *waveforms*, so that the output is
a respiration signal any breath detector can read, and the rate follows from it:

1. **Windows.** The recording is cut into analysis windows of :data:`WINDOW_S` (hop
   :data:`HOP_S`; the last window aligned to the end, so every sample is covered).
2. **Quality.** Each source's spectral concentration in each window (:mod:`resp_sep.quality`) and
   its dominant breathing frequency ``f_i``.
3. **Agreement.** The window's consensus frequency ``f_c`` is the weighted median of the ``f_i``
   (weights ``q_i ** POWER``). A source whose ``f_i`` is off by more than the tolerance
   (:func:`tolerance_hz`) is down-weighted by ``exp(-((f_i - f_c) / tol)^2 / 2)``: a source that
   counts a different rhythm is not averaged in.
4. **Weights.** ``w_i = q_i ** POWER * agreement_i``, normalised to sum to one; sources with no
   valid signal in the window get 0. **One vote per family:** sources that measure the same
   modulation of the same channel (``families``; e.g. R-wave amplitude, R-S amplitude and QRS area
   all read the QRS complexes) fail together, so their ``q ** POWER`` are rescaled to sum to the
   family's largest before the consensus and the weights: three readings of one mechanism must not
   outvote a second mechanism (on the development subjects this took the ECG-only fusion on
   MARSH from 0.91 to 0.74 breaths/min, docs/method.md).
5. **Alignment.** Each source is scaled like the anchor in the window and aligned to it: the lag (up to a third of a breath, at most :data:`MAX_LAG_S`) and the sign that maximise the
   cross-correlation. Heart-rate and amplitude modulations reach the ECG/PPG with different delays
   and either polarity; unaligned, they would cancel. The anchor is the recording's heaviest source
   on average wherever it keeps a fair weight (:data:`ANCHOR_SHARE`), so the waveform keeps one
   time reference; elsewhere the window's heaviest source.
6. **Combination.** The weighted sum of the aligned sources, band-passed to 0.6-1.6 times the
   consensus frequency (:data:`SHAPE_BAND`: what remains is one oscillation per breath); windows are blended with triangular
   weights divided by their sum (as :func:`resp_sep.separate.overlap_add`), each window's sign
   chosen to continue the previous one so the waveform never flips.
7. **Level.** The fused waveform's amplitude is evened out (its RMS over :data:`LEVEL_S` brought
   to the recording's typical level) with at most :data:`MAX_GAIN` of gain: where aligned sources
   partly cancel, the breaths came out small and breath detectors with a relative-amplitude rule
   dropped them; a real pause (less than a quarter of the typical level) stays small. On the
   development subjects this took MARSH from 0.59 to 0.48 breaths/min with respsep's counter,
   which has a relative-amplitude rule; with the count-adv counter and on CinC it moved by at
   most 0.06 (docs/method.md).
8. **Confidence.** Per window: the share of the total quality held by sources that agree with
   ``f_c``, times the concentration of the fused waveform. Windows whose two best sources disagree
   (both above :data:`GOOD_QUALITY`, frequencies apart beyond tolerance) are flagged
   ``disagree``; windows with confidence below :data:`LOW_CONFIDENCE` are ``low_confidence``.
9. **Rate windows** (what ``--rates`` reports, :meth:`FusionResult.rate_windows`): a rate
   window's confidence is the overlap-weighted mean confidence of its analysis windows times the
   rate's own quality (how cleanly its breaths could be counted, :mod:`resp_sep.rate`): the
   sources must agree *and* the fused breaths be countable. A window below
   :data:`LOW_RATE_CONFIDENCE` is flagged, as ``disagree`` when most of its analysis windows had two
   good sources disagreeing, else ``low_confidence``; the others are ``ok``. On the development
   recordings the product predicts the error better than either factor, and the threshold flags
   the windows more than 2 breaths/min off best (docs/method.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from resp_sep.parallel import ordered_map
from resp_sep.quality import _window_spectra, window_spectra

#: analysis window and hop (s).
WINDOW_S, HOP_S = 30.0, 15.0
#: quality exponent of the weights: favours clearly periodic sources.
POWER = 2.0
#: largest lag (s) searched when aligning a source to the anchor.
MAX_LAG_S = 3.0
#: two sources above this quality that disagree make a window "disagree".
GOOD_QUALITY = 0.5
#: analysis windows whose confidence is below this are "low_confidence".
LOW_CONFIDENCE = 0.3
#: rate windows whose confidence (agreement x concentration x rate quality) is below this are flagged: the
#: threshold that best separates the development windows more than 2 breaths/min off (MARSH and CinC pooled:
#: 73 % of them flagged, 12 % of the others; docs/method.md)
LOW_RATE_CONFIDENCE = 0.35
#: the recording's main source stays the alignment anchor of a window while its weight is at least
#: this share of the window's heaviest source.
ANCHOR_SHARE = 0.25
#: the fused window is band-passed to [lo, hi] x its consensus frequency: ripples and drift that a breath
#: detector could count are removed, breaths that come 40 % slower or 60 % faster than the window's
#: rate are kept.
SHAPE_BAND: tuple[float, float] | None = (0.6, 1.6)
#: sources are clipped at this many robust standard deviations: an artefact must not outvote breathing.
CLIP = 5.0
#: the fused waveform's RMS is evened out over this many seconds...
LEVEL_S = 20.0
#: ...with at most this gain, so that a pause (breathing < 1 / MAX_GAIN of its typical size) stays a pause.
MAX_GAIN = 4.0
FLAGS = ("ok", "low_confidence", "disagree", "no_source")


def tolerance_hz(f_hz: np.ndarray | float) -> np.ndarray:
    """Frequency tolerance (Hz) within which two sources agree: 10 % of the rate, at least 1.2 breaths/min."""
    return np.maximum(0.02, 0.10 * np.asarray(f_hz, dtype=float))


@dataclass
class FusionResult:
    """The fused respiration and how it was made.

    Attributes
    ----------
    wave : numpy.ndarray, shape (n,)
        Fused respiration (z-score units) at ``fs``; NaN where no source is valid.
    fs : float
        Sampling rate (Hz).
    names : list of str
        The sources, in column order of the per-window arrays.
    start_s, end_s : numpy.ndarray, shape (n_windows,)
        Analysis windows (s).
    weights : numpy.ndarray, shape (n_windows, n_sources)
        Normalised fusion weights (rows sum to 1, or 0 when no source is valid).
    quality : numpy.ndarray, shape (n_windows, n_sources)
        Each source's spectral concentration.
    peak_hz : numpy.ndarray, shape (n_windows, n_sources)
        Each source's dominant breathing frequency (Hz).
    consensus_hz : numpy.ndarray, shape (n_windows,)
        Weighted-median frequency (Hz).
    confidence : numpy.ndarray, shape (n_windows,)
        0..1 (module docstring, step 7).
    flag : numpy.ndarray of str, shape (n_windows,)
        One of :data:`FLAGS`.
    sign, lag_s : numpy.ndarray, shape (n_windows, n_sources)
        The alignment applied to each source.
    """

    wave: np.ndarray
    fs: float
    names: list[str]
    start_s: np.ndarray
    end_s: np.ndarray
    weights: np.ndarray
    quality: np.ndarray
    peak_hz: np.ndarray
    consensus_hz: np.ndarray
    confidence: np.ndarray
    flag: np.ndarray
    sign: np.ndarray = field(repr=False, default=None)
    lag_s: np.ndarray = field(repr=False, default=None)

    def window_summary(self, start_s: float, end_s: float) -> dict:
        """Confidence, flag and mean weight per source over the analysis windows overlapping [start_s, end_s).

        The confidence is the overlap-weighted mean; the flag the worst one seen.
        """
        ov = np.clip(np.minimum(self.end_s, end_s) - np.maximum(self.start_s, start_s), 0, None)
        if not ov.any():
            return {"confidence": 0.0, "flag": "no_source", "weights": {}}
        w = ov / ov.sum()
        weights = (self.weights * w[:, None]).sum(axis=0)
        flags = self.flag[ov > 0]
        worst = max(flags, key=FLAGS.index)
        return {"confidence": float((self.confidence * w).sum()), "flag": str(worst),
                "weights": {n: float(v) for n, v in zip(self.names, weights) if v > 0}}

    def rate_windows(self, start_s: np.ndarray, end_s: np.ndarray, quality: np.ndarray,
                     scored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Confidence and flag of rate windows (module docstring, step 9), as ``--rates`` reports them.

        Parameters
        ----------
        start_s, end_s : numpy.ndarray, shape (n_rate_windows,)
            Rate windows (s).
        quality : numpy.ndarray, shape (n_rate_windows,)
            Each window's rate quality (0-1, :attr:`resp_sep.rate.RateWindows.quality`).
        scored : numpy.ndarray of bool, shape (n_rate_windows,)
            Windows with a rate.

        Returns
        -------
        confidence : numpy.ndarray, shape (n_rate_windows,)
            0-1; 0 where there is no rate.
        flag : numpy.ndarray of str, shape (n_rate_windows,)
            ``ok``, ``low_confidence`` or ``disagree``; ``no_source`` where no analysis window
            overlapping it had a source.
        """
        n = len(start_s)
        conf = np.zeros(n)
        flag = np.full(n, "no_source", dtype=object)
        fl = np.asarray(self.flag)
        for k in range(n):
            ov = np.clip(np.minimum(self.end_s, end_s[k]) - np.maximum(self.start_s, start_s[k]), 0, None)
            if not ov.any():
                continue
            if scored[k]:
                conf[k] = float((self.confidence * ov).sum() / ov.sum()) * float(quality[k])
            sourced = (ov > 0) & (fl != "no_source")
            if not sourced.any():
                continue
            if conf[k] >= LOW_RATE_CONFIDENCE:
                flag[k] = "ok"
            else:
                # a rate that reaches into a gap is judged by the part with sources (its confidence is
                # lowered by the gap, whose windows count 0)
                dis = (ov * (fl == "disagree")).sum() / (ov * sourced).sum()
                flag[k] = "disagree" if dis >= 0.5 else "low_confidence"
        return conf, flag.astype(str)


def window_starts(n: int, length: int, hop: int) -> np.ndarray:
    """Window starts (samples) covering ``n`` samples; the last window ends at ``n`` (one window if n <= length)."""
    if n <= length:
        return np.zeros(1, int)
    starts = np.arange(0, n - length + 1, hop)
    if starts[-1] != n - length:
        starts = np.append(starts, n - length)
    return starts


def fuse(waves: dict[str, np.ndarray], fs: float, *, window_s: float = WINDOW_S, hop_s: float = HOP_S,
         power: float = POWER, shape: bool = True, families: dict[str, str] | None = None,
         level: bool = True, scale: dict[str, np.ndarray] | None = None) -> FusionResult:
    """Fuse respiratory sources sampled on one grid.

    Parameters
    ----------
    waves : dict of str to numpy.ndarray, each shape (n,)
        Source waveforms (any unit and sign), NaN where invalid; equal lengths.
    fs : float
        Their rate (Hz).
    window_s, hop_s : float
        Analysis window and hop (s).
    power : float
        Quality exponent of the weights.
    shape : bool
        Band-pass each fused window around its consensus frequency (:data:`SHAPE_BAND`).
    families : dict of str to str, optional
        Each source's modulation family (:func:`resp_sep.sources.source_families`); a family gets
        one vote (module docstring, step 4). Sources not named are families of their own; ``None``
        makes every source its own family.
    level : bool
        Even out the fused waveform's amplitude (module docstring, step 7).
    scale : dict of str to numpy.ndarray, each shape (n,), optional
        Per-source reliability factors on the sources' grid (dimensionless, 0-1; NaN counts as 1):
        a window's factor is the mean over the window, and it multiplies the source's ``q ** power``
        before the family vote, the consensus and the weights. Sources not named keep factor 1.

    Returns
    -------
    FusionResult
    """
    names = list(waves)
    if not names:
        raise ValueError("nothing to fuse: no sources")
    X = _Normalised([np.asarray(waves[k]) for k in names])  # (S, n), normalised where read: not held twice
    n_src, n = X.shape
    length = min(n, max(4, int(round(window_s * fs))))
    hop = max(1, min(length, int(round(hop_s * fs))))
    starts = window_starts(n, length, hop)
    n_win = starts.size

    spectra = list(ordered_map(lambda i: window_spectra(X[i], fs, starts, length), range(n_src)))  # windows normalised as read
    quality = np.stack([s.concentration for s in spectra], axis=1)  # (W, S)
    peak = np.stack([s.peak_hz for s in spectra], axis=1)
    base = np.where(np.isfinite(peak), quality ** power, 0.0)
    for i, k in enumerate(names):
        if scale and k in scale:
            base[:, i] *= _window_means(np.asarray(scale[k], float), starts, length)
    if families:
        base = _one_vote_per_family(base, [families.get(k, k) for k in names])
    consensus = np.array([_weighted_median(peak[w], base[w]) for w in range(n_win)])
    tol = tolerance_hz(consensus)
    dev = (peak - consensus[:, None]) / tol[:, None]
    agreement = np.where(np.isfinite(dev), np.exp(-0.5 * np.clip(dev, -50, 50) ** 2), 0.0)
    raw = base * agreement
    tot = raw.sum(axis=1, keepdims=True)
    weights = np.where(tot > 0, raw / np.where(tot > 0, tot, 1), 0.0)

    max_lag = int(round(MAX_LAG_S * fs))
    # one time reference for the whole recording where possible: a window aligned to another anchor
    # would be shifted by the lag between the two, and the cross-fade would smear the breaths
    main = int(np.argmax(weights.mean(axis=0)))
    anchors = np.where(weights[:, main] >= ANCHOR_SHARE * weights.max(axis=1), main, np.argmax(weights, axis=1))
    wave, signs, lags, fused_conc = _fuse_windows(X, starts, length, weights, consensus, fs, max_lag, anchors,
                                                  tot[:, 0] > 0, shape and SHAPE_BAND is not None)
    if level:
        wave = _level(wave, fs)

    agree_share = np.where(base.sum(axis=1) > 0, (base * (np.abs(dev) <= 1)).sum(axis=1)
                           / np.where(base.sum(axis=1) > 0, base.sum(axis=1), 1), 0.0)
    confidence = np.clip(agree_share * fused_conc, 0.0, 1.0)
    flag = _flags(quality, peak, tol, confidence, tot[:, 0] > 0)
    t0 = starts / fs
    return FusionResult(wave, fs, names, t0, t0 + length / fs, weights, quality, peak, consensus,
                        confidence, flag, signs, lags)


#: windows combined at once by :func:`_fuse_windows`: bounds its temporaries (the alignment's shifted
#: copies, up to 61 lags x window x block, ~5 MB per array at 10 Hz) whatever the recording's length
FUSE_BLOCK = 32


def _fuse_windows(X: np.ndarray, starts: np.ndarray, length: int, weights: np.ndarray, consensus: np.ndarray,
                  fs: float, max_lag: int, anchors: np.ndarray, active: np.ndarray, shape: bool):
    """Align, weight, shape and blend the windows (module docstring, steps 5-6), :data:`FUSE_BLOCK` at a time.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_sources, n)
        Normalised sources.
    starts : numpy.ndarray of int, shape (n_windows,)
    length : int
        Window length (samples).
    weights : numpy.ndarray, shape (n_windows, n_sources)
    consensus : numpy.ndarray, shape (n_windows,)
        Consensus frequency (Hz), NaN where unknown.
    fs : float
    max_lag : int
        Largest alignment lag (samples).
    anchors : numpy.ndarray of int, shape (n_windows,)
        Each window's alignment anchor (a source index).
    active : numpy.ndarray of bool, shape (n_windows,)
        Windows with any weight.
    shape : bool
        Band-pass each window around its consensus frequency (:data:`SHAPE_BAND`).

    Returns
    -------
    wave : numpy.ndarray, shape (n,)
    signs, lags_s : numpy.ndarray, shape (n_windows, n_sources)
    fused_conc : numpy.ndarray, shape (n_windows,)
        Spectral concentration of each fused window.

    The same numbers as the one-window-at-a-time loop (``tests/fusion_oracle.py``, compared in
    tests/test_fusion.py): every per-window quantity is the same numpy operation on the same row
    (row sums, FFTs and matrix-vector products of stacked rows equal those of lone rows; the
    alignment's matrix-vector products are grouped by their number of lags, because BLAS sums a
    product differently for another number of rows), the sources are added in the same order, and
    the polarity chain and overlap-add, which depend on the previous window, run window by window.
    """
    n_src, n = X.shape
    n_win = starts.size
    taper = np.minimum(np.arange(length) + 1, length - np.arange(length)).astype(float)
    taper /= taper.max()
    acc = np.zeros(n)
    wsum = np.zeros(n)
    signs = np.zeros((n_win, n_src))
    lags = np.zeros((n_win, n_src))
    fused_conc = np.zeros(n_win)
    lag_lim = np.full(n_win, max_lag, dtype=int)
    known = np.isfinite(consensus) & (consensus > 0)
    # a third of a breath: beyond that, sign and lag trade places
    lag_lim[known] = np.minimum(max_lag, np.floor(fs / consensus[known] / 3)).astype(int)
    todo = np.flatnonzero(active)

    def block(ws: np.ndarray):
        segs, sg, lg = _combine_block(X, starts[ws], length, weights[ws], lag_lim[ws], anchors[ws])
        if shape:
            rows = np.flatnonzero(np.isfinite(consensus[ws]) & (np.isfinite(segs).sum(axis=1) >= 8))
            if rows.size:
                segs[rows] = _around_rows(segs[rows], fs, consensus[ws][rows], *SHAPE_BAND)
        ok_rows = np.isfinite(segs).any(axis=1)
        conc = np.zeros(ws.size)
        if ok_rows.any():  # a negated window has the same spectrum: computed before the polarity chain
            k = np.flatnonzero(ok_rows)
            conc[k] = _window_spectra(segs[k].ravel(), fs, np.arange(k.size) * length, length, lone=True).concentration
        return ws, segs, sg, lg, ok_rows, conc

    # blocks are computed ahead by the worker threads; the polarity chain and overlap-add, which
    # depend on the previous window, run here in order
    for ws, segs, sg, lg, ok_rows, conc in ordered_map(block, (todo[b:b + FUSE_BLOCK]
                                                               for b in range(0, todo.size, FUSE_BLOCK))):
        signs[ws], lags[ws] = sg, lg / fs
        for j, w in enumerate(ws):
            if not ok_rows[j]:
                continue
            a = starts[w]
            seg = segs[j]
            ok = np.isfinite(seg)
            # keep the waveform's polarity continuous across windows
            prev = acc[a:a + length] / np.where(wsum[a:a + length] > 0, wsum[a:a + length], 1)
            both = ok & (wsum[a:a + length] > 0)
            if both.sum() > 2 and np.dot(seg[both], prev[both]) < 0:
                seg, signs[w] = -seg, -signs[w]
            tw = np.where(ok, taper, 0.0)
            acc[a:a + length] += tw * np.where(ok, seg, 0.0)
            wsum[a:a + length] += tw
            fused_conc[w] = conc[j]
    pos = wsum > 0
    np.divide(acc, wsum, out=acc, where=pos)  # in place: the same numbers, one grid-length array fewer
    acc[~pos] = np.nan
    return acc, signs, lags, fused_conc


def _combine_block(X: np.ndarray, a: np.ndarray, length: int, weights: np.ndarray, lag_lim: np.ndarray,
                   anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One window's weighted sum of sources aligned to its anchor, for a block of windows starting at ``a`` (B,);
    returns segments (B, length), signs and lags (B, S)."""
    n_src = X.shape[0]
    nb = a.size
    rows = np.arange(nb)
    cols = a[:, None] + np.arange(length)[None, :]
    ref = X.gather(anchors, cols)  # (B, length)
    gain = _std_rows(ref)
    z_all = np.empty((n_src, nb, length))
    s_all = np.zeros((n_src, nb))
    lag_all = np.zeros((n_src, nb), int)
    sd_all = np.zeros((n_src, nb))
    for i in range(n_src):
        use = weights[:, i] > 0
        z_all[i] = ref
        s_all[i] = 1.0
        al = np.flatnonzero(use & (anchors != i))
        if al.size:
            # the part of the source these windows can reach, normalised once (not once per lag)
            r0 = max(0, int((a[al] - lag_lim[al]).min()))
            r1 = min(X.shape[1], int((a[al] + length + lag_lim[al]).max()))
            z_all[i, al], s_all[i, al], lag_all[i, al] = _align_rows(X[i, r0:r1], a[al] - r0, length, ref[al],
                                                                     lag_lim[al], n=X.shape[1] - r0, lo_min=-r0)
        sd_all[i] = np.where(use, _std_rows(z_all[i]), 0.0)
    signs = np.zeros((nb, n_src))
    lags = np.zeros((nb, n_src), int)
    num = np.zeros((nb, length))
    den = np.zeros((nb, length))
    order = np.stack([np.argsort(-weights[j]) for j in range(nb)])  # heaviest first, as _combine adds them
    for k in range(n_src):
        i = order[:, k]
        z = z_all[i, rows]
        sd = sd_all[i, rows]
        w = weights[rows, i]
        s = s_all[i, rows]
        use = (w > 0) & (sd > 0)
        ok = np.isfinite(z) & use[:, None]
        # each source at the anchor's scale in this window: a source's units (or a noisy window's size)
        # must not outweigh its quality weight
        scale = gain / np.where(use, sd, 1.0)
        num += np.where(ok, w[:, None] * s[:, None] * np.nan_to_num(z) * scale[:, None], 0.0)
        den += np.where(ok, w[:, None], 0.0)
        signs[rows[use], i[use]] = s[use]
        lags[rows[use], i[use]] = lag_all[i, rows][use]
    seg = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return seg, signs, lags


def _align_rows(x: np.ndarray, a: np.ndarray, length: int, ref: np.ndarray, lag_lim: np.ndarray,
                n: int | None = None, lo_min: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The windows of one source shifted by the lag (|lag| <= its limit) and sign that best match the anchor's,
    for several windows: shifted windows (B, length), signs (B,), lags (B,).

    The lag maximises |Pearson r| between the shifted window and the anchor's: for every lag at once
    from sliding sums (the window's sum and sum of squares by cumulative sums, its product with the
    zero-mean anchor by ``np.correlate``), so each window costs a few passes over its reach, not a
    copy per lag. Missing samples are left out of the sums (and counted out). Ties go to the
    smallest lag.

    ``x`` may be a part of the source: window starts ``a`` are then relative to it, the source
    starts at ``lo_min`` (<= 0) and ends at ``n`` in the same coordinates; ``x`` must hold every
    sample the windows can reach.
    """
    n = x.size if n is None else n
    nb = a.size
    lo, hi = np.maximum(lo_min, a - lag_lim), np.minimum(n, a + length + lag_lim)
    best_lag = np.zeros(nb, int)
    sign = np.ones(nb)
    fin_r = np.isfinite(ref)
    has = fin_r.any(axis=1)
    r = np.zeros((nb, length))
    full = fin_r.all(axis=1)
    r[full] = ref[full] - ref[full].mean(axis=1)[:, None]
    for j in np.flatnonzero(~full & has):
        r[j] = np.nan_to_num(ref[j]) - np.nanmean(ref[j])
    fin_x = np.isfinite(x)
    cv = np.concatenate(([0], np.cumsum(fin_x)))
    gapless = (cv[hi] - cv[lo]) == (hi - lo)  # windows whose whole reach has a value
    g = np.flatnonzero(gapless & has)
    if g.size:
        # every lag at once from sliding sums (the window's sum and sum of squares by cumulative sums,
        # its product with the zero-mean anchor by one contraction over a strided view): the same
        # Pearson r as the explicit windows, without a copy of the source per lag
        x0 = np.where(fin_x, x, 0.0)
        cs = np.concatenate(([0.0], np.cumsum(x0)))
        cs2 = np.concatenate(([0.0], np.cumsum(x0 * x0)))
        m = hi[g] - lo[g] - length + 1
        mm = int(m.max())
        valid_lag = np.arange(mm)[None, :] < m[:, None]
        k = np.where(valid_lag, lo[g][:, None] + np.arange(mm)[None, :], lo[g][:, None])
        view = np.lib.stride_tricks.sliding_window_view(x0, length)
        dot = np.einsum("bml,bl->bm", view[k], r[g])
        mean = (cs[k + length] - cs[k]) / length
        sd = np.sqrt(np.maximum((cs2[k + length] - cs2[k]) / length - mean * mean, 0.0))
        c = (dot - mean * r[g].sum(axis=1)[:, None]) / np.where(sd > 0, sd, np.inf)
        lg = k - a[g][:, None]
        best = np.argmax(np.where(valid_lag, np.abs(c) - 1e-9 * np.abs(lg), -np.inf), axis=1)  # ties: smallest lag
        rows = np.arange(g.size)
        best_lag[g] = lg[rows, best]
        sign[g] = np.where(c[rows, best] >= 0, 1.0, -1.0)
    # windows reaching missing samples (few: near gaps), explicitly: every shifted window, masked
    n_lags = hi - lo - length + 1
    for j in np.flatnonzero(~gapless & has):
        m = int(n_lags[j])
        view = x[lo[j] + np.arange(m)[:, None] + np.arange(length)[None, :]]
        lg = np.arange(m) + (lo[j] - a[j])
        rows_ = np.nan_to_num(view)
        valid = np.isfinite(view)
        cnt = np.maximum(valid.sum(axis=1), 1)
        mean = rows_.sum(axis=1) / cnt
        dev = np.where(valid, rows_ - mean[:, None], 0.0)
        sd = np.sqrt((dev ** 2).sum(axis=1) / cnt)
        c = (dev @ r[j]) / np.where(sd > 0, sd, np.inf)
        best = int(np.argmax(np.abs(c) - 1e-9 * np.abs(lg)))
        best_lag[j] = lg[best]
        sign[j] = 1.0 if c[best] >= 0 else -1.0
    z = x[(a + best_lag)[:, None] + np.arange(length)[None, :]]
    return z, sign, best_lag


def _std_rows(z: np.ndarray) -> np.ndarray:
    """:func:`_std` of every row of ``z`` (B, length)."""
    fin = np.isfinite(z)
    full = fin.all(axis=1)
    out = np.zeros(z.shape[0])
    if z.shape[1] > 1:
        out[full] = z[full].std(axis=1)
    for j in np.flatnonzero(~full):
        out[j] = _std(z[j])
    return out


def _around_rows(segs: np.ndarray, fs: float, f_c: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Every row of ``segs`` (B, m) band-passed to [lo, hi] x its own ``f_c`` (B,) (raised-cosine edges, zero phase,
    reflected ends); rows with >= 8 valid samples."""
    ok = np.isfinite(segs)
    x = np.where(ok, segs, 0.0)
    m = x.shape[1]
    xp = np.concatenate((x[:, ::-1], x, x[:, ::-1]), axis=1)
    f = np.fft.rfftfreq(xp.shape[1], 1.0 / fs)[None, :]
    f1, f2 = lo * f_c[:, None], hi * f_c[:, None]
    w = 0.25 * f_c[:, None]  # edge width (Hz)
    h = np.clip(np.minimum((f - (f1 - w)) / w, ((f2 + w) - f) / w), 0.0, 1.0)
    h = 0.5 - 0.5 * np.cos(np.pi * h)
    y = np.fft.irfft(np.fft.rfft(xp, axis=1) * h, n=xp.shape[1], axis=1)[:, m:2 * m]
    return np.where(ok, y, np.nan)


def robust_scale(x: np.ndarray) -> float:
    """Robust standard deviation of the finite samples: 1.4826 x median absolute deviation (1 if nil)."""
    v = x[np.isfinite(x)]
    if v.size < 2:
        return 1.0
    d = v - np.median(v)
    np.abs(d, out=d)
    s = 1.4826 * float(np.median(d, overwrite_input=True))  # d is a temporary: no copy to partition
    return s if s > 0 else (float(v.std()) or 1.0)


class _Normalised:
    """The sources as :func:`_normalise` makes them, computed where they are read.

    ``fuse`` reads every source whole once (its window spectra) and then only the windows it
    aligns; holding the normalised copy of every source beside the sources themselves would add
    8 bytes per source sample (55 MB for 8 sources over 24 h). Each read value is
    ``clip((x - median) / robust_scale, -CLIP, CLIP)`` of the same sample, the same arithmetic as
    :func:`_normalise` on the whole array, so the numbers are the same.

    ``X[i]`` is a row (``.size``, slices, index arrays, ``numpy.asarray``), ``X[i, a:b]`` a slice
    of one, :meth:`gather` one window per row of indices.
    """

    def __init__(self, waves: list[np.ndarray]):
        self.waves = waves
        self.shape = (len(waves), waves[0].size if waves else 0)
        self.med, self.scale = [], []
        for x in waves:
            x = np.asarray(x, dtype=np.float64)
            self.med.append(np.nanmedian(x) if np.isfinite(x).any() else 0.0)
            self.scale.append(robust_scale(x))

    def take(self, i: int, idx) -> np.ndarray:
        y = np.asarray(self.waves[i][idx], dtype=np.float64) - self.med[i]
        y /= self.scale[i]
        return np.clip(y, -CLIP, CLIP, out=y)

    def row(self, i: int) -> np.ndarray:
        return self.take(i, slice(None))

    def gather(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Values at ``cols[j]`` of source ``rows[j]`` for each j; shape of ``cols``."""
        out = np.empty(cols.shape)
        for i in np.unique(rows):
            sel = rows == i
            out[sel] = self.take(int(i), cols[sel])
        return out

    def __getitem__(self, key):
        if isinstance(key, tuple):
            i, idx = key
            return self.take(int(i), idx)
        return _Row(self, int(key))


class _Row:
    """One row of :class:`_Normalised`, read by slices or index arrays."""

    def __init__(self, X: _Normalised, i: int):
        self.X, self.i, self.size = X, i, X.shape[1]

    def __getitem__(self, idx) -> np.ndarray:
        return self.X.take(self.i, idx)

    def take(self, idx) -> np.ndarray:
        """Normalised values at ``idx`` (what ``row[idx]`` gives)."""
        return self.X.take(self.i, idx)

    def __array__(self, dtype=None, copy=None):
        return self.X.row(self.i)


def _normalise(x: np.ndarray) -> np.ndarray:
    """``x`` less its median, in units of its robust standard deviation, artefacts clipped at +-CLIP."""
    med = np.nanmedian(x) if np.isfinite(x).any() else 0.0
    y = x - med
    y /= robust_scale(x)  # in place: the same values with one temporary instead of three
    return np.clip(y, -CLIP, CLIP, out=y)


def _std(x: np.ndarray) -> float:
    v = x[np.isfinite(x)]
    return float(v.std()) if v.size > 1 else 0.0


def _zscore(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    if ok.sum() < 2:
        return np.full(x.shape, np.nan)
    m, sd = x[ok].mean(), x[ok].std()
    return (x - m) / sd if sd > 0 else np.where(ok, 0.0, np.nan)


def _level(wave: np.ndarray, fs: float) -> np.ndarray:
    """``wave`` with its running RMS (:data:`LEVEL_S`) brought to the median level, gain <= :data:`MAX_GAIN`.

    ``wave`` is changed in place (and returned).
    """
    ok = np.isfinite(wave)
    if ok.sum() < 2:
        return wave
    from scipy.ndimage import uniform_filter1d

    x = wave  # in place: the caller's fused waveform (a 48-h night's grid is 14 MB per array)
    x[~ok] = 0.0
    # mean power over the valid samples of a centred LEVEL_S window (shorter at the ends: zeros outside)
    m = max(1, int(round(LEVEL_S * fs)))
    rms = x * x
    uniform_filter1d(rms, m, mode="constant", output=rms)  # (ndimage filters a copy of each line: in place is safe)
    count = ok.astype(np.float64)
    uniform_filter1d(count, m, mode="constant", output=count)
    pos = count > 0
    np.divide(rms, count, out=rms, where=pos)
    del count
    rms[~pos] = 0.0
    np.sqrt(rms, out=rms)
    typical = float(np.median(rms[ok], overwrite_input=True))
    if not typical > 0:
        x[~ok] = np.nan
        return x
    np.maximum(rms, typical / MAX_GAIN, out=rms)
    np.divide(typical, rms, out=rms)
    np.multiply(x, rms, out=x)
    x[~ok] = np.nan
    return x


def _window_means(f: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Mean of ``f`` (shape (n,); NaN read as 1) over each window ``[start, start + length)``, clipped to 0-1."""
    c = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(f), f, 1.0))])
    end = np.minimum(starts + length, f.size)
    return np.clip((c[end] - c[starts]) / np.maximum(end - starts, 1), 0.0, 1.0)


def _one_vote_per_family(base: np.ndarray, family: list[str]) -> np.ndarray:
    """``base`` (n_windows, n_sources) with each family's columns rescaled to sum to the family's largest."""
    out = base.copy()
    fam = np.asarray(family)
    for f in dict.fromkeys(family):
        cols = np.flatnonzero(fam == f)
        if cols.size < 2:
            continue
        b = base[:, cols]
        tot = b.sum(axis=1, keepdims=True)
        out[:, cols] = np.where(tot > 0, b * (b.max(axis=1, keepdims=True) / np.where(tot > 0, tot, 1)), 0.0)
    return out


def _weighted_median(v: np.ndarray, w: np.ndarray) -> float:
    ok = np.isfinite(v) & (w > 0)
    if not ok.any():
        return np.nan
    v, w = v[ok], w[ok]
    o = np.argsort(v)
    c = np.cumsum(w[o])
    return float(v[o][np.searchsorted(c, 0.5 * c[-1])])


def _flags(quality: np.ndarray, peak: np.ndarray, tol: np.ndarray, confidence: np.ndarray,
           any_source: np.ndarray) -> np.ndarray:
    flag = np.full(quality.shape[0], "ok", dtype=object)
    for w in range(quality.shape[0]):
        if not any_source[w]:
            flag[w] = "no_source"
            continue
        good = np.flatnonzero((quality[w] >= GOOD_QUALITY) & np.isfinite(peak[w]))
        if good.size >= 2:
            top = good[np.argsort(-quality[w, good])[:2]]
            if abs(peak[w, top[0]] - peak[w, top[1]]) > tol[w]:
                flag[w] = "disagree"
                continue
        if confidence[w] < LOW_CONFIDENCE:
            flag[w] = "low_confidence"
    return flag.astype(str)
