"""Bounded-memory extraction: read, resample, separate, stitch and resample again in blocks.

:meth:`resp_sep.separate.Separator.extract` holds the whole recording several times over (the
channel as read, its 200-Hz copy, two float64 stitching accumulators and their quotient): about
20-27 MB per hour, 2 GB for a 72-h Holter record. :func:`extract_stream` computes the *same
numbers* - bit for bit - while holding only a few batches of segments at a time, so its memory
does not depend on the recording's length (only the output itself grows: 0.36 MB per hour as
float32 at 25 Hz).

How it stays identical to the whole-array path
----------------------------------------------
* **Resampling** (:class:`resp_sep.resample.LineResampler`): ``resample_poly(x, up, down,
  padtype="line")`` is ``upfirdn`` with a fixed FIR filter over the signal extended at both ends
  by the straight line through its first and last samples. Each output sample is the same
  ordered sum of products of input samples (or extension values) and filter taps, whichever block
  it is computed in; blocks are given the extension values computed from the *whole* signal's
  first and last samples.
* **Segments and batches** are the same: the same starts (:func:`segment_starts`), grouped into
  the same batches, so the model sees the same tensors.
* **Stitching**: each 200-Hz sample is the same sum over the same segments in the same order,
  divided by the same weight sum; a sample is final once the next batch starts after it.
* The 200-Hz respiration's *last* sample is needed before anything can be resampled to the
  output rate (the line extension uses it), so the last batch is run first and kept.
* **Threads**: the channel is read in the calling thread, in order; a separator with
  ``batch_workers > 1`` (the ONNX back end) resamples each batch to 200 Hz and runs the network on
  it in worker threads, several batches at once (:func:`resp_sep.segments.map_batches`). Each
  batch's numbers depend on its own input samples only, so they are the same in any thread.

tests/test_stream.py checks equality with the whole-array path at many lengths, hops, batch
sizes and block sizes, with block boundaries falling everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from resp_sep.errors import InputError
from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN
from resp_sep.resample import LineResampler, rate_ratio

#: output samples computed per resampling block (bounds the temporary arrays)
BLOCK = 1 << 18

Reader = Callable[[int, int], np.ndarray]


# ------------------------------------------------------------------------------------ extraction


def extract_stream(sep, read: Reader, n_in: int, fs: float, *, out_fs: float = 25.0, hop: int | None = None,
                   batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
                   path: str | None = None, label: str = "", block: int = BLOCK) -> np.ndarray:
    """:meth:`Separator.extract` of a channel read block by block, in bounded memory; same output.

    Parameters
    ----------
    sep : Separator or OnnxSeparator
        Anything with ``respiration_segments`` and ``device`` (:func:`resp_sep.onnxrun.load_separator`).
    read : callable
        ``read(a, b)`` returns samples ``a..b-1`` of the channel (physical units, float64, finite:
        missing samples bridged, :class:`resp_sep.chunks.Bridged`; the channel checked before,
        :func:`resp_sep.chunks.check`).
    n_in : int
        Samples in the channel.
    fs : float
        The channel's rate (Hz); resampled to 200 Hz block by block as ``load_signal`` would.
    label : str
        Channel label for error messages.

    Returns
    -------
    ndarray, float32
        Exactly ``sep.extract(load_signal(...).x, 200, out_fs=..., hop=..., batch_size=...)``.

    Raises
    ------
    InputError
        Too short for one segment.
    """
    from resp_sep.segments import batch_workers, default_batch, map_batches, segment_starts, triangular_weights

    def read_checked(a: int, b: int) -> np.ndarray:
        return np.asarray(read(a, b), dtype=np.float64)

    x_first = float(read_checked(0, 1)[0])
    x_last = float(read_checked(n_in - 1, n_in)[0])
    up, down = rate_ratio(fs, MODEL_FS)
    r1 = None if up == down else LineResampler(n_in, up, down, x_first, x_last)
    n200 = n_in if r1 is None else r1.n_out

    # reading (the caller's reader, not thread-safe) happens here, in order; resampling the batch to
    # 200 Hz and the network may run in the batch workers (map_batches), several batches at once
    def fetch(a: int, b: int) -> tuple[int, int, int, np.ndarray]:
        """The input samples 200-Hz samples ``[a, b)`` depend on: ``(a, b, first input index, samples)``."""
        if r1 is None:
            return a, b, a, read_checked(a, b)
        lo, hi = r1.needs(a, b)
        i0, i1 = max(lo, 0), min(hi, n_in)
        return a, b, i0, (read_checked(i0, i1) if i1 > i0 else np.zeros(0))

    def at200(task: tuple[int, int, int, np.ndarray]) -> np.ndarray:
        """200-Hz samples ``[a, b)`` (float32) from :func:`fetch`'s input samples (the same numbers
        whatever the blocks: :class:`LineResampler` computes each output from its own inputs)."""
        a, b, i0, raw = task
        if r1 is None:
            return raw.astype(np.float32)

        def from_raw(i: int, j: int) -> np.ndarray:
            return raw[i - i0:j - i0]

        out = np.empty(b - a, dtype=np.float32)
        for k in range(a, b, block):
            out[k - a:min(b, k + block) - a] = r1.compute(k, min(b, k + block), from_raw)
        return out
    if n200 < SEGMENT_LEN:
        raise InputError(
            f"recording too short: {n200 / MODEL_FS:.1f} s, the separator needs at least "
            f"{SEGMENT_LEN / MODEL_FS:.2f} s", path)
    L = SEGMENT_LEN
    hop = L // 2 if hop is None else int(hop)
    if batch_size is None:
        batch_size = default_batch(sep.device)
    starts = segment_starts(n200, L, hop)
    w = triangular_weights(L, hop)
    batches = [starts[a:a + batch_size] for a in range(0, len(starts), batch_size)]

    def separate(task) -> np.ndarray:
        st, inputs = task
        x = at200(inputs)
        segs = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(x, L)[st - st[0]])
        return sep.respiration_segments(segs)

    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress:
            progress(done[0], len(starts))

    # the last batch first: the 200-Hz output's last sample (only the last segment covers it)
    order = [batches[-1], *batches[:-1]]
    tasks = ((st, fetch(int(st[0]), int(st[-1]) + L)) for st in order)
    outputs = map_batches(separate, tasks, batch_workers(sep))
    try:
        return _stitch(outputs, batches, w, n200, out_fs, block, tick)
    finally:
        outputs.close()
        if hasattr(sep, "release"):  # the ONNX session's buffers: not needed by the stages after this one
            sep.release()


def _stitch(outputs, batches: list[np.ndarray], w: np.ndarray, n200: int, out_fs: float, block: int,
            tick: Callable[[int], None]) -> np.ndarray:
    """Overlap-add the batches' outputs (the last batch's first, then the others in order) and resample
    the finished 200-Hz samples to ``out_fs`` as they become final."""
    L = SEGMENT_LEN
    last_out = next(outputs)
    tick(len(batches[-1]))
    y_last = (0.0 + w[L - 1] * last_out[-1][L - 1]) / (0.0 + w[L - 1])

    # streaming state: stitching accumulators from `base`, finished 200-Hz samples from `fbase`
    base = 0
    acc = np.zeros(0)
    wsum = np.zeros(0)
    fin = np.zeros(0)      # finished 200-Hz respiration, samples [fbase, fbase + len(fin))
    fbase = 0
    pieces: list[np.ndarray] = []
    r2 = None
    k_next = 0             # next output sample to compute
    resample_out = out_fs != MODEL_FS
    if resample_out:
        up2, down2 = rate_ratio(MODEL_FS, out_fs)
        resample_out = up2 != down2

    def emit(final_upto: int) -> None:
        """Compute the output samples whose inputs are all finished 200-Hz samples."""
        nonlocal k_next, fin, fbase
        # output k needs 200-Hz samples up to ((k + pre) * down) // up: finished when < final_upto
        k_end = min(r2.n_out, (final_upto * r2.up - 1) // r2.down - r2.pre + 1)
        if final_upto >= n200:
            k_end = r2.n_out

        def read_fin(a: int, b: int) -> np.ndarray:
            return fin[a - fbase:b - fbase]

        while k_next < k_end:
            k1 = min(k_end, k_next + block)
            pieces.append(r2.compute(k_next, k1, read_fin))
            k_next = k1
        if k_next < r2.n_out:  # drop finished samples no later output needs
            lo = r2.needs(k_next, k_next + 1)[0]
            keep_from = max(fbase, (lo // r2.down) * r2.down)  # compute() starts on the grid
            fin = fin[keep_from - fbase:]
            fbase = keep_from

    for bi, st in enumerate(batches):
        y = last_out if bi == len(batches) - 1 else next(outputs)
        if bi != len(batches) - 1:
            tick(len(st))
        end = int(st[-1]) + L
        if end - base > acc.size:  # grow the accumulators to cover this batch
            acc = np.concatenate([acc, np.zeros(end - base - acc.size)])
            wsum = np.concatenate([wsum, np.zeros(end - base - wsum.size)])
        for s, yk in zip(st, y):
            o = int(s) - base
            acc[o:o + L] += w * yk
            wsum[o:o + L] += w
        final = int(batches[bi + 1][0]) if bi + 1 < len(batches) else n200
        if not np.all(wsum[:final - base] > 0):  # cannot happen with segment_starts
            raise AssertionError("overlap-add left samples uncovered")
        done200 = acc[:final - base] / wsum[:final - base]
        acc, wsum = acc[final - base:], wsum[final - base:]
        base = final
        if not resample_out:
            pieces.append(done200)
            continue
        fin = np.concatenate([fin, done200])
        if r2 is None:
            r2 = LineResampler(n200, up2, down2, float(fin[0]), y_last)
        emit(base)
    return np.concatenate(pieces).astype(np.float32)
