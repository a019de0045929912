"""The separator's segments without the network: cutting, scaling, unscaling and stitching.

Whatever runs the network (torch, :mod:`resp_sep.separate`; ONNX Runtime, :mod:`resp_sep.onnxrun`),
a recording is cut into overlapping 12,288-sample segments at 200 Hz (the last one aligned to the
end, so every sample is covered whatever the length), each segment is min-max scaled as in
training (:func:`scale_segments`), the network gives the respiration source's sigmoid output in
[0, 1], which is mapped back to the input's units with the segment's mean removed
(:func:`unscale`), and the segments are blended with triangular weights divided by their sum
(:func:`overlap_add`), so no seam or edge artefact appears.

This module imports neither torch nor ONNX Runtime: the streamed extraction
(:mod:`resp_sep.stream`) and both back ends share it, so that they cut, scale and stitch the same
way, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from resp_sep.errors import InputError
from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN, resample


def segment_starts(n: int, length: int, hop: int) -> np.ndarray:
    """Start indices covering ``n`` samples with segments of ``length`` and step ``hop``.

    The last start is ``n - length`` so the tail is covered without padding.

    Raises
    ------
    ValueError
        When ``n < length``.
    """
    if n < length:
        raise ValueError(f"signal of {n} samples is shorter than one segment ({length})")
    if hop <= 0 or hop > length:
        raise ValueError("hop must be in 1..length")
    starts = np.arange(0, n - length + 1, hop)
    if starts[-1] != n - length:
        starts = np.append(starts, n - length)
    return starts


def triangular_weights(length: int, hop: int) -> np.ndarray:
    """Cross-fade weights: a triangle (trapezoid when hop < length/2) that is > 0 everywhere.

    Rising over the first ``length - hop`` samples would also work; a plain triangle, as in
    demucs, keeps the seams far from either segment's edges, where a convolutional network is
    least reliable (zero padding).
    """
    i = np.arange(length, dtype=np.float64)
    w = np.minimum(i + 1, length - i)
    return w / w.max()


def map_batches(fn: Callable, batches: Iterable, workers: int = 1) -> Iterator[np.ndarray]:
    """``fn`` of each batch (of segments, or of what makes them), as float64 arrays, in order.

    With ``workers > 1``, that many batches are computed at once in threads
    (:func:`resp_sep.parallel.ordered_map`: at most two batches ahead per worker), while the batches
    themselves are produced by the caller's thread, in order (a reader need not be thread-safe). A
    batch's output depends on that batch alone, so the numbers do not depend on ``workers``. The
    ONNX back end runs this way on one-thread sessions
    (:attr:`resp_sep.onnxrun.OnnxSeparator.batch_workers`): coarse tasks keep both cores busy on a
    loaded machine, where a parallel region per operator waits for every descheduled thread.
    """
    def one(batch) -> np.ndarray:
        return np.asarray(fn(batch), dtype=np.float64)

    if workers <= 1:
        yield from map(one, batches)
        return
    from resp_sep.parallel import ordered_map

    yield from ordered_map(one, batches, workers)


def batch_workers(sep) -> int:
    """Batches a separator runs at once (``sep.batch_workers``; 1 for torch, whose operators use the threads)."""
    return max(1, int(getattr(sep, "batch_workers", 1) or 1))


def overlap_add(x: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], length: int = SEGMENT_LEN,
                hop: int | None = None, batch_size: int = 16,
                progress: Callable[[int, int], None] | None = None, workers: int = 1) -> np.ndarray:
    """Apply ``fn`` to overlapping segments of ``x`` and blend the results.

    Parameters
    ----------
    x : ndarray, shape (n,)
    fn : callable
        Maps a batch of segments ``(b, length)`` to outputs ``(b, length)``.
    length, hop : int
        Segment length and step in samples (default hop: ``length // 2``).
    batch_size : int
        Segments per call of ``fn``.
    progress : callable, optional
        ``progress(done, total)`` after each batch (segments).
    workers : int
        Batches computed at once (threads; :func:`map_batches`); the result does not depend on it.

    Returns
    -------
    ndarray, shape (n,), float64
        ``sum_k w_k y_k / sum_k w_k``; equals ``x`` exactly when ``fn`` is the identity.
    """
    x = np.asarray(x)
    hop = length // 2 if hop is None else int(hop)
    starts = segment_starts(len(x), length, hop)
    w = triangular_weights(length, hop)
    acc = np.zeros(len(x), dtype=np.float64)
    wsum = np.zeros(len(x), dtype=np.float64)
    view = np.lib.stride_tricks.sliding_window_view(x, length)
    groups = [starts[a:a + batch_size] for a in range(0, len(starts), batch_size)]
    outputs = map_batches(fn, (np.ascontiguousarray(view[st]) for st in groups), workers)
    done = 0
    try:
        for st, y in zip(groups, outputs):
            for s, yk in zip(st, y):
                acc[s:s + length] += w * yk
                wsum[s:s + length] += w
            done += len(st)
            if progress:
                progress(done, len(starts))
    finally:
        outputs.close()
    if not np.all(wsum > 0):  # cannot happen with segment_starts; checked because it matters
        raise AssertionError("overlap-add left samples uncovered")
    return acc / wsum


def scale_segments(segs: np.ndarray, clip_pct: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Min-max scale raw segments ``(b, L)`` as in training: scaled float32 ``(b, L)`` and the spans ``(b, 1)``.

    ``clip_pct > 0``: robust scaling as in training (:func:`resp_sep.preprocess.robust_scale`):
    the bounds are the ``clip_pct`` / ``100 - clip_pct`` percentiles and samples beyond them clip.
    A flat segment (span 0) is given span 1.
    """
    segs = np.asarray(segs, dtype=np.float32)
    if clip_pct:
        from resp_sep.preprocess import robust_bounds

        lo, hi = robust_bounds(segs, clip_pct)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        return np.clip((segs - lo) / span, 0.0, 1.0), span
    lo = segs.min(axis=1, keepdims=True)
    span = segs.max(axis=1, keepdims=True) - lo
    span = np.where(span > 0, span, 1.0)
    return (segs - lo) / span, span


def unscale(p: np.ndarray, span: np.ndarray, sign: float) -> np.ndarray:
    """Sigmoid outputs ``(b, L)`` (float32, in [0, 1]) back to input units, each segment's mean removed, times ``sign``."""
    y = p * span
    return (sign * (y - y.mean(axis=1, keepdims=True))).astype(np.float32)


def at_model_rate(x: np.ndarray, fs: float, path: str | None = None) -> np.ndarray:
    """``x`` resampled from ``fs`` to 200 Hz.

    Raises
    ------
    InputError
        Shorter than one segment (61.44 s).
    """
    if fs != MODEL_FS:
        x = resample(x, fs, MODEL_FS)
    if len(x) < SEGMENT_LEN:
        raise InputError(
            f"recording too short: {len(x) / MODEL_FS:.1f} s, the separator needs at least "
            f"{SEGMENT_LEN / MODEL_FS:.2f} s", path)
    return x


def default_batch(device) -> int:
    """Segments per network call: 128 on CUDA, 16 on CPU (a few MB of activations per segment)."""
    return 128 if str(device).startswith("cuda") else 16


def extract_array(sep, x: np.ndarray, fs: float = MODEL_FS, *, out_fs: float = 25.0, hop: int | None = None,
                  batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
                  path: str | None = None) -> np.ndarray:
    """Respiration waveform of a whole recording held in memory, by any separator back end.

    Parameters
    ----------
    sep : object
        Has ``respiration_segments(segs (b, L)) -> (b, L)`` and ``device``
        (:class:`resp_sep.separate.Separator` or :class:`resp_sep.onnxrun.OnnxSeparator`).
    x : ndarray, shape (n,)
        ECG or PPG at ``fs`` Hz (resampled to 200 Hz here when needed).
    out_fs : float
        Output rate in Hz.
    hop : int, optional
        Segment step in samples at 200 Hz (default: half a segment).
    batch_size : int, optional
        Segments per network call (default: :func:`default_batch`).

    Returns
    -------
    ndarray, shape (round(n / fs * out_fs),), float32

    Raises
    ------
    InputError
        Signal shorter than one segment (61.44 s).
    """
    # float32 at 200 Hz: what the model sees anyway (segments are cast to float32), half the memory
    x = at_model_rate(x, fs, path).astype(np.float32, copy=False)
    if batch_size is None:
        batch_size = default_batch(sep.device)
    y = overlap_add(x, sep.respiration_segments, SEGMENT_LEN, hop, batch_size, progress,
                    workers=batch_workers(sep))
    if out_fs != MODEL_FS:
        y = resample(y, MODEL_FS, out_fs)
    return y.astype(np.float32)
