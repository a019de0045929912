"""Extraction: run the separator over a whole recording and stitch the respiration source.

The signal is cut into overlapping 12,288-sample segments (the last one aligned to the end, so
every sample is covered whatever the length), each segment is min-max scaled as in training,
encoded, all encodings but the respiration encoder's are zeroed and only that one source is
decoded. Segment outputs are mapped back to the input's units (undoing the min-max scaling),
their mean removed, and blended with triangular weights divided by their sum (overlap-add), so no
seam or edge artefact appears.

Memory stays bounded: segments are read from a strided view batch by batch and accumulated into
two arrays the length of the signal (float64 at 200 Hz: 46 MB for 8 h).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

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


def overlap_add(x: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], length: int = SEGMENT_LEN,
                hop: int | None = None, batch_size: int = 16,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
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
    for a in range(0, len(starts), batch_size):
        st = starts[a:a + batch_size]
        y = np.asarray(fn(np.ascontiguousarray(view[st])), dtype=np.float64)
        for s, yk in zip(st, y):
            acc[s:s + length] += w * yk
            wsum[s:s + length] += w
        if progress:
            progress(min(a + batch_size, len(starts)), len(starts))
    if not np.all(wsum > 0):  # cannot happen with segment_starts; checked because it matters
        raise AssertionError("overlap-add left samples uncovered")
    return acc / wsum


@dataclass
class Separator:
    """A trained model ready for inference on one device.

    Attributes
    ----------
    model : MultiEncoderAE
    resp_encoder : int
        Index of the respiration encoder.
    device : torch.device
    sign : float
        +1 or -1: orientation that makes inhalation rise (from validation references when the
        checkpoint has them; +1 otherwise).
    """

    model: torch.nn.Module
    resp_encoder: int
    device: torch.device
    sign: float = 1.0
    signal: str = "ecg"
    name: str = ""

    @classmethod
    def from_checkpoint(cls, path_or_name: str | None, signal: str = "ecg", device: str = "auto",
                        threads: int = 0) -> "Separator":
        """Load a checkpoint (path or shipped name; default: the shipped model for ``signal``)."""
        from resp_sep.checkpoint import build_model, load_checkpoint, resolve_model
        from resp_sep.train import resolve_device

        path = resolve_model(path_or_name, signal)
        ck = load_checkpoint(path)
        dev = resolve_device(device)
        if threads > 0:
            torch.set_num_threads(threads)
        model = build_model(ck).to(dev)
        return cls(model=model, resp_encoder=int(ck["resp_encoder"]), device=dev,
                   sign=float(ck.get("resp_sign", 1.0) or 1.0), signal=str(ck.get("signal", signal)),
                   name=str(path))

    @torch.inference_mode()
    def respiration_segments(self, segs: np.ndarray) -> np.ndarray:
        """Respiration source of raw segments, in the input's units with the mean removed.

        Parameters
        ----------
        segs : ndarray, shape (b, L)
            Raw (unscaled) segments at 200 Hz.

        Returns
        -------
        ndarray, shape (b, L), float32
        """
        segs = np.asarray(segs, dtype=np.float32)
        lo = segs.min(axis=1, keepdims=True)
        span = segs.max(axis=1, keepdims=True) - lo
        span = np.where(span > 0, span, 1.0)
        x = torch.from_numpy((segs - lo) / span)[:, None].to(self.device)
        z = self.model.encode(x)
        y = torch.sigmoid(self.model.decode(self.model.mask(z, self.resp_encoder)))[:, 0]
        y = y.float().cpu().numpy() * span  # back to input units (the offset is removed below)
        return (self.sign * (y - y.mean(axis=1, keepdims=True))).astype(np.float32)

    def extract(self, x: np.ndarray, fs: float = MODEL_FS, *, out_fs: float = 25.0, hop: int | None = None,
                batch_size: int = 16, progress: Callable[[int, int], None] | None = None,
                path: str | None = None) -> np.ndarray:
        """Respiration waveform of a whole recording.

        Parameters
        ----------
        x : ndarray, shape (n,)
            ECG or PPG at ``fs`` Hz (resampled to 200 Hz here when needed).
        out_fs : float
            Output rate in Hz (25 Hz resolves breathing far beyond 60 breaths/min).
        hop : int, optional
            Segment step in samples at 200 Hz (default: half a segment).

        Returns
        -------
        ndarray, shape (round(n / fs * out_fs),), float32
            Respiration (arbitrary units, zero mean per segment, inhalation up when the model
            knows its sign).

        Raises
        ------
        InputError
            Signal shorter than one segment (61.44 s).
        """
        if fs != MODEL_FS:
            x = resample(x, fs, MODEL_FS)
        if len(x) < SEGMENT_LEN:
            raise InputError(
                f"recording too short: {len(x) / MODEL_FS:.1f} s, the separator needs at least "
                f"{SEGMENT_LEN / MODEL_FS:.2f} s", path)
        y = overlap_add(x, self.respiration_segments, SEGMENT_LEN, hop, batch_size, progress)
        if out_fs != MODEL_FS:
            y = resample(y, MODEL_FS, out_fs)
        return y.astype(np.float32)


# -------------------------------------------------------------------------------- whole files


def choose_signal(labels: list[str], signal: str, overrides: dict | None, path: str) -> str:
    """``auto`` -> ``ecg`` when the recording has one, else ``ppg``; checks the choice exists."""
    from resp_sep.channels import detect_roles

    roles = detect_roles(labels, overrides)
    if signal == "auto":
        for cand in ("ecg", "ppg"):
            if cand in roles:
                return cand
        raise InputError(f"no ECG or PPG channel found (channels: {', '.join(labels)}); "
                         "name one with --channel ecg=LABEL", path)
    if signal not in ("ecg", "ppg"):
        raise InputError(f"--signal must be auto, ecg or ppg (got '{signal}')", exit_code=2)
    if signal not in roles:
        raise InputError(f"no {signal} channel found (channels: {', '.join(labels)}); "
                         f"name one with --channel {signal}=LABEL", path)
    return signal


@dataclass
class ExtractOptions:
    """Options of :func:`extract_file` (the CLI's ``extract`` flags)."""

    signal: str = "auto"
    model: str | None = None
    device: str = "auto"
    channel: dict | None = None
    out_rate: float = 25.0
    hop_s: float = SEGMENT_LEN / MODEL_FS / 2
    batch_size: int = 16
    fmt: str = "csv"
    rates: str | None = None
    plot: str | None = None
    window_s: float = 60.0


def extract_file(path: str, out: str, opts: ExtractOptions, separators: dict | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Extract the respiration of one recording and write it (atomically).

    Parameters
    ----------
    path : str
        Recording (EDF/BDF/WFDB).
    out : str
        Output file (``.csv`` with header ``time_s,resp``, or EDF+ when ``opts.fmt == "edf"``).
    opts : ExtractOptions
    separators : dict, optional
        Cache ``{signal: Separator}`` so batch runs load each model once.

    Returns
    -------
    dict
        ``file``, ``out``, ``signal``, ``channel``, ``duration_s``, ``resp_encoder``, ``model``,
        ``median_bpm`` (when rates were computed) and ``note``.
    """
    from resp_sep.io import read_recording
    from resp_sep.preprocess import load_signal
    from resp_sep.writers import write_csv, write_edf

    rec = read_recording(path)
    signal = choose_signal(rec.labels, opts.signal, opts.channel, str(rec.path))
    separators = {} if separators is None else separators
    if signal not in separators:
        separators[signal] = Separator.from_checkpoint(opts.model, signal, opts.device)
    sep = separators[signal]
    sig = load_signal(rec, signal, opts.channel)
    hop = max(1, min(SEGMENT_LEN, int(round(opts.hop_s * MODEL_FS))))
    y = sep.extract(sig.x, MODEL_FS, out_fs=opts.out_rate, hop=hop, batch_size=opts.batch_size,
                    progress=progress, path=str(rec.path))
    t = np.arange(len(y)) / opts.out_rate
    if opts.fmt == "edf":
        write_edf(out, [{"label": "Resp respsep", "fs": opts.out_rate, "unit": "a.u.", "data": y}],
                  start_time=rec.start_time)
    else:
        write_csv(out, ["time_s", "resp"], [t, y], ["%.4f", "%.6g"])
    info = {"file": str(rec.path), "out": str(out), "signal": signal, "channel": sig.label,
            "duration_s": round(sig.duration_s, 3), "resp_encoder": sep.resp_encoder, "model": sep.name,
            "note": sig.note}
    rates = None
    if opts.rates or opts.plot:
        from resp_sep.rate import breathing_rate

        rates = breathing_rate(y, opts.out_rate, window_s=opts.window_s)
        ok = np.isfinite(rates.bpm)
        info["median_bpm"] = float(np.median(rates.bpm[ok])) if ok.any() else None
        info["windows_scored"] = f"{int(ok.sum())}/{len(rates.bpm)}"
    if opts.rates:
        write_csv(opts.rates, ["start_s", "end_s", "breaths_per_min", "quality"],
                  [rates.start_s, rates.end_s, rates.bpm, rates.quality], ["%.2f", "%.2f", "%.3f", "%.3f"])
        info["rates"] = str(opts.rates)
    if opts.plot:
        from resp_sep.plots import plot_extraction

        plot_extraction(opts.plot, rec, sig, y, opts.out_rate, rates, opts.channel)
        info["plot"] = str(opts.plot)
    return info
