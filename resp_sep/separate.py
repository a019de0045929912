"""Extraction: run the separator over a whole recording and stitch the respiration source.

The signal is cut into overlapping 12,288-sample segments (the last one aligned to the end, so
every sample is covered whatever the length), each segment is min-max scaled as in training,
encoded, all encodings but the respiration encoder's are zeroed and only that one source is
decoded. Segment outputs are mapped back to the input's units (undoing the min-max scaling),
their mean removed, and blended with triangular weights divided by their sum (overlap-add), so no
seam or edge artefact appears.

Memory stays bounded: segments are read from a strided view batch by batch and accumulated into
two arrays the length of the signal (float64 at 200 Hz: 46 MB for 8 h).

Speed (docs/performance.md): by default the model is run through :class:`RespirationNet`, the
respiration pathway alone rebuilt for inference (only the respiration encoder runs, the decoder's
upsample + convolution pairs become polyphase convolutions): the same function, about 2-4x fewer
operations on CPU. On CUDA the segments are decoded under bf16 autocast and, on request, through
``torch.compile``. :func:`extract_plain` is the straightforward reference (every encoder decoded,
fp32, eager) that the fast path is tested and benchmarked against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN, resample
from resp_sep.segments import (  # noqa: F401 - segment_starts, triangular_weights: re-exported
    at_model_rate,
    extract_array,
    overlap_add,
    scale_segments,
    segment_starts,
    triangular_weights,
    unscale,
)


class RespirationNet(nn.Module):
    """One source of a :class:`~resp_sep.model.MultiEncoderAE`, rebuilt for fast inference.

    ``RespirationNet(model, k)(x)`` computes ``model.decode(model.mask(model.encode(x), k))`` of the
    model in eval mode (a snapshot of its weights), with fewer operations:

    1. Only encoder ``k`` runs: its channel group is sliced out of every grouped convolution and
       BatchNorm (running statistics: eval mode), so the encoder costs 1/N of the full one (the
       grouped convolutions, with a few channels per group, are also slow per FLOP on CPU).
    2. The decoder input convolution sees only encoder ``k``'s channels (the others are zero).
    3. Each nearest-neighbour x2 upsampling followed by a ``k``-tap convolution is computed as one
       convolution of the low-rate signal with ``2 c`` outputs (the even and odd output samples,
       interleaved afterwards): with ``k = 7`` 5 taps per output pair instead of 14 multiplies.
       The two phase kernels are sums of the original taps (summed in float64, then rounded once).
       GroupNorm runs before the interleaving (same groups, same statistics); the last layer's
       output convolution too, so only the output samples themselves get interleaved.
    4. The 1x1 output convolution is a matrix product (oneDNN is slow with one output channel).

    The result equals the masked decode up to floating-point rounding (exact in float64 up to
    ~1e-12; in float32 the re-associated sums differ by ~1e-7 relative per layer, which the
    decoder's GroupNorms can amplify to ~1e-5 on random weights: tests/test_fast_path.py).

    Parameters
    ----------
    model : MultiEncoderAE
    k : int
        Encoder to decode.
    portable : bool
        Compute the GroupNorm statistics with explicit two-level means (:func:`portable_group_norm`)
        instead of ``F.group_norm``: the form exported to ONNX (:mod:`resp_sep.onnxrun`), where
        ``F.group_norm`` becomes an InstanceNormalization whose float32 statistics drift by up to
        ~1e-5 on the decoder's post-ReLU activations.
    """

    @torch.no_grad()
    def __init__(self, model: nn.Module, k: int, *, portable: bool = False):
        super().__init__()
        self.portable = portable
        cfg = model.config
        n = cfg.n_encoders
        if not 0 <= k < n:
            raise ValueError(f"encoder index {k} out of range (model has {n})")
        self.k = k
        self.stride = int(getattr(cfg, "input_stride", 1))
        layers: list[nn.Module] = []
        for layer in model.encoder:
            if isinstance(layer, nn.Conv1d):
                g = layer.groups
                o, i = layer.out_channels // g, layer.in_channels // g
                w = layer.weight
                conv = nn.Conv1d(i, o, layer.kernel_size[0], padding=layer.padding[0],
                                 bias=layer.bias is not None, device=w.device, dtype=w.dtype)
                rows = slice(k * o, (k + 1) * o) if g > 1 else slice(None)
                conv.weight.copy_(w.detach()[rows])
                if layer.bias is not None:
                    conv.bias.copy_(layer.bias.detach()[rows])
                layers.append(conv)
            elif isinstance(layer, nn.BatchNorm1d):
                o = layer.num_features // n
                rows = slice(k * o, (k + 1) * o)
                rm = layer.running_mean
                bn = nn.BatchNorm1d(o, eps=layer.eps, affine=layer.affine, device=rm.device, dtype=rm.dtype)
                if layer.affine:
                    bn.weight.copy_(layer.weight.detach()[rows])
                    bn.bias.copy_(layer.bias.detach()[rows])
                bn.running_mean.copy_(rm[rows])
                bn.running_var.copy_(layer.running_var[rows])
                layers.append(bn)
            else:  # ReLU, MaxPool1d: stateless
                layers.append(layer)
        self.encoder = nn.Sequential(*layers).eval()
        h = cfg.hidden // n
        self.dec_in_w = nn.Parameter(model.dec_in.weight.detach()[:, k * h:(k + 1) * h].clone(), requires_grad=False)
        self.dec_in_b = nn.Parameter(model.dec_in.bias.detach().clone(), requires_grad=False)
        g = model.dec_in_norm
        self.norm_in = (g.num_groups, g.eps)
        self.norm_in_w = nn.Parameter(g.weight.detach().clone(), requires_grad=False)
        self.norm_in_b = nn.Parameter(g.bias.detach().clone(), requires_grad=False)
        # decoder layers: polyphase weights with rows 2 o + r (channel o, phase r), so the GroupNorm
        # groups stay contiguous before the phases are interleaved; norm parameters repeated to match
        self.pads: list[tuple[int, int]] = []
        self.groups: list[tuple[int, float]] = []
        self.dec_w, self.dec_b = nn.ParameterList(), nn.ParameterList()
        self.norm_w, self.norm_b = nn.ParameterList(), nn.ParameterList()
        for conv, g in zip(model.dec_convs, model.dec_norms):
            w, b, pads = _polyphase(conv)
            self.dec_w.append(nn.Parameter(w, requires_grad=False))
            self.dec_b.append(nn.Parameter(b, requires_grad=False))
            self.pads.append(pads)
            self.groups.append((g.num_groups, g.eps))
            self.norm_w.append(nn.Parameter(g.weight.detach().repeat_interleave(2), requires_grad=False))
            self.norm_b.append(nn.Parameter(g.bias.detach().repeat_interleave(2), requires_grad=False))
        out = model.dec_out  # 1x1 convolution, applied as a matrix product (oneDNN is slow at 1 output)
        self.out_w = nn.Parameter(out.weight.detach()[:, :, 0].clone(), requires_grad=False)  # weight_norm resolved
        self.out_b = nn.Parameter(out.bias.detach().clone()[:, None], requires_grad=False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(b, in_channels, L)`` of source ``k`` for min-max scaled segments ``(b, in_channels, L)``."""
        if self.stride > 1:  # a strided front end (ModelConfig.input_stride), as MultiEncoderAE does it
            from resp_sep.model import upsample_logits

            return upsample_logits(self._logits(F.avg_pool1d(x, self.stride)), self.stride)
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.conv1d(self.encoder(x), self.dec_in_w, self.dec_in_b))
        h = self._group_norm(h, self.norm_in[0], self.norm_in_w, self.norm_in_b, self.norm_in[1])
        last = len(self.dec_w) - 1
        for i, (w, b, (pl, pr), (groups, eps), nw, nb) in enumerate(
                zip(self.dec_w, self.dec_b, self.pads, self.groups, self.norm_w, self.norm_b)):
            y = F.conv1d(h, w, b, padding=pl) if pl == pr else F.conv1d(F.pad(h, (pl, pr)), w, b)
            # (b, 2c, M), row 2 o + r = output sample 2 m + r of channel o; a group's rows are
            # contiguous and hold the same values as after interleaving: same statistics
            y = self._group_norm(F.relu_(y), groups, nw, nb, eps)
            bsz, c2, m = y.shape
            if i < last:
                h = y.view(bsz, c2 // 2, 2, m).transpose(2, 3).reshape(bsz, c2 // 2, 2 * m)
            else:  # output layer on the phase layout; interleave the (few) output channels only
                o = torch.matmul(self.out_w, y.view(bsz, c2 // 2, 2 * m)) + self.out_b  # (b, out, 2M)
                return o.view(bsz, -1, 2, m).transpose(2, 3).reshape(bsz, -1, 2 * m)
        return torch.matmul(self.out_w, h) + self.out_b

    def _group_norm(self, x: torch.Tensor, groups: int, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
        if self.portable:
            return portable_group_norm(x, groups, w, b, eps)
        return F.group_norm(x, groups, w, b, eps)


def portable_group_norm(x: torch.Tensor, groups: int, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """``F.group_norm(x, groups, w, b, eps)`` from elementary operations, accurate in float32 on any runtime.

    The mean and variance of each group's ``n`` values are means of means over blocks of up to 64
    (a two-level sum: rounding error ~(64 + n / 64) eps instead of ~n eps for one running sum), and
    the variance is taken about the mean (two passes), so they stay accurate when the values sit far
    from zero (post-ReLU activations). Exported to ONNX this is ReduceMean, Sub, Mul, Sqrt and
    Div nodes, which every runtime computes the same way.

    Parameters
    ----------
    x : Tensor, shape (b, c, m)
    groups : int
        Divides ``c``.
    w, b : Tensor, shape (c,)
        Affine parameters.
    """
    bsz, c, m = x.shape
    n = (int(c) // groups) * int(m)
    blk = math.gcd(n, 64)
    h = x.reshape(bsz, groups, n // blk, blk)
    mu = h.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)
    d = h - mu
    var = (d * d).mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)
    y = (d / torch.sqrt(var + eps)).reshape(bsz, c, m)
    return y * w[:, None] + b[:, None]


def _polyphase(conv: nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Weights of ``conv(interpolate(h, 2, "nearest"))`` as one convolution of ``h``.

    Output sample ``2m + r`` (phase ``r``) is ``sum_j w[j] u[2m + r + j - p]`` with ``u[i] = h[i // 2]``,
    i.e. taps on ``h[m + (r + j - p) // 2]``; zero padding of ``u`` is zero padding of ``h``.

    Returns
    -------
    weight : Tensor, shape (2 * out, in, taps)
        Row ``2 o + r`` gives phase ``r`` (even/odd output samples) of output channel ``o``.
    bias : Tensor, shape (2 * out,)
    pads : (left, right)
        Zero padding of ``h`` (equal for odd kernels with 'same' padding).
    """
    w = conv.weight.detach()
    k = w.shape[-1]
    p = conv.padding[0]
    if k != 2 * p + 1 or conv.stride[0] != 1 or conv.dilation[0] != 1:
        raise ValueError("polyphase form needs an odd kernel with 'same' padding")
    offs = [[(r + j - p) // 2 for j in range(k)] for r in (0, 1)]
    lo = min(min(o) for o in offs)
    hi = max(max(o) for o in offs)
    w64 = w.double()
    out = torch.zeros(w.shape[0], 2, w.shape[1], hi - lo + 1, dtype=torch.float64, device=w.device)
    for r in (0, 1):
        for j in range(k):
            out[:, r, :, offs[r][j] - lo] += w64[:, :, j]
    bias = conv.bias.detach() if conv.bias is not None else w.new_zeros(w.shape[0])
    return (out.reshape(2 * w.shape[0], w.shape[1], -1).to(w.dtype).contiguous(),
            bias.repeat_interleave(2).clone(), (-lo, hi))


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
    fast: bool = True
    compile: bool = False
    clip_pct: float = 0.0  # robust scaling of the checkpoint (percent clipped at either end; 0 = min-max)
    note: str = ""  # remark for the user (why ONNX Runtime was not used: resp_sep.onnxrun.load_separator)
    engine: str = "torch"

    # fast: run the model through RespirationNet (same function, fewer operations; bf16 autocast on
    # CUDA). False: encode with every encoder and decode the masked encoding, in the model's dtype.
    # compile: torch.compile the fast network (CUDA only; silently eager when compiling fails).

    @classmethod
    def from_checkpoint(cls, path_or_name: str | None, signal: str = "ecg", device: str = "auto",
                        threads: int = 0, *, fast: bool = True, compile: bool = False) -> Separator:
        """Load a checkpoint (path or shipped name; default: the shipped model for ``signal``).

        ``threads > 0`` sets torch's CPU threads (default: torch's choice, one per physical core).
        """
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
                   name=str(path), fast=fast, compile=compile,
                   clip_pct=float((ck.get("preprocess") or {}).get("clip_percentile", 0.0) or 0.0))

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
        x, span = _scaled_batch(segs, self.device, self.clip_pct)
        if self.fast and not self.model.training:
            logits = self._fast_logits(x)
        else:
            z = self.model.encode(x)
            logits = self.model.decode(self.model.mask(z, self.resp_encoder))
        return _unscaled(torch.sigmoid(logits.float())[:, 0], span, self.sign)

    def _fast_logits(self, x: torch.Tensor) -> torch.Tensor:
        net = self._fast_net()
        cuda = x.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            compiled = getattr(self, "_compiled", None)
            if compiled is not None:
                b = x.shape[0]
                self._compiled_bs = max(b, getattr(self, "_compiled_bs", 0))
                xp = F.pad(x, (0, 0, 0, 0, 0, self._compiled_bs - b)) if b < self._compiled_bs else x
                try:
                    return compiled(xp)[:b]
                except Exception:  # noqa: BLE001 - compiler missing or failing: stay eager from now on
                    self._compiled = None
            return net(x)

    def _fast_net(self) -> RespirationNet:
        """The cached :class:`RespirationNet`, rebuilt whenever the model's weights changed."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        try:
            versions = tuple(t._version for t in tensors)  # bumped by every in-place change
        except RuntimeError:  # inference tensors keep no version counter
            versions = tuple(t.data_ptr() for t in tensors)
        key = (id(self.model), self.resp_encoder, str(tensors[0].device), tensors[0].dtype, versions)
        if getattr(self, "_net_key", None) != key:
            with torch.inference_mode(False), torch.no_grad():
                self._net = RespirationNet(self.model, self.resp_encoder)
            self._net_key = key
            self._compiled = None
            if self.compile and tensors[0].device.type == "cuda":
                try:
                    self._compiled = torch.compile(self._net, dynamic=False)
                except Exception:  # noqa: BLE001 - no compiler: eager
                    self._compiled = None
        return self._net

    def extract(self, x: np.ndarray, fs: float = MODEL_FS, *, out_fs: float = 25.0, hop: int | None = None,
                batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
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
        batch_size : int, optional
            Segments per model call (default: 16 on CPU, 128 on CUDA).

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
        return extract_array(self, x, fs, out_fs=out_fs, hop=hop, batch_size=batch_size, progress=progress,
                             path=path)


def extract_plain(model: torch.nn.Module, x: np.ndarray, fs: float = MODEL_FS, resp_encoder: int = 0, *,
                  sign: float = 1.0, out_fs: float = 25.0, hop: int | None = SEGMENT_LEN, batch_size: int = 1,
                  device: str | torch.device = "cpu") -> np.ndarray:
    """Straightforward extraction, as published: the reference of the fast path and of the benchmarks.

    Every encoder's masked encoding is decoded (``model.separate``, all N sources) and the
    respiration source picked afterwards; fp32 eager PyTorch under ``torch.no_grad``; segments
    one at a time (``batch_size``) and by default not overlapping (``hop`` = one segment, the last
    one aligned to the end). Scaling, stitching and output are those of :meth:`Separator.extract`,
    so with the same ``hop`` both give the same waveform (up to rounding).

    Parameters
    ----------
    model : MultiEncoderAE
        In eval mode.
    x : ndarray, shape (n,)
        ECG or PPG at ``fs`` Hz.
    resp_encoder : int
        Index of the respiration encoder.
    sign : float
        Orientation (+1 or -1).
    hop : int or None
        Segment step at 200 Hz (``None``: half a segment, the :meth:`Separator.extract` default).

    Returns
    -------
    ndarray, shape (round(n / fs * out_fs),), float32
    """
    dev = torch.device(device)
    x = _at_model_rate(x, fs)

    def fn(segs: np.ndarray) -> np.ndarray:
        xt, span = _scaled_batch(segs, dev)
        with torch.no_grad():
            y = model.separate(xt)[:, resp_encoder]
        return _unscaled(y, span, sign)

    y = overlap_add(x, fn, SEGMENT_LEN, hop, batch_size)
    if out_fs != MODEL_FS:
        y = resample(y, MODEL_FS, out_fs)
    return y.astype(np.float32)


def _at_model_rate(x: np.ndarray, fs: float, path: str | None = None) -> np.ndarray:
    return at_model_rate(x, fs, path)


def _scaled_batch(segs: np.ndarray, device: torch.device, clip_pct: float = 0.0) -> tuple[torch.Tensor, np.ndarray]:
    """Min-max scale raw segments ``(b, L)`` -> tensor ``(b, 1, L)`` on ``device`` and the spans
    (:func:`resp_sep.segments.scale_segments`)."""
    x, span = scale_segments(segs, clip_pct)
    return torch.from_numpy(x)[:, None].to(device), span


def _unscaled(y: torch.Tensor, span: np.ndarray, sign: float) -> np.ndarray:
    """Sigmoid outputs ``(b, L)`` back to input units (offset removed), times ``sign``."""
    return unscale(y.float().cpu().numpy(), span, sign)


# -------------------------------------------------------------------------------- whole files
# Whole recordings go through :mod:`resp_sep.pipeline` (the separator is one source among others).
