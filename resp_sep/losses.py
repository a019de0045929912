"""Training losses of the multi-encoder autoencoder (Webster & Lee, Eqs. 9-14).

total = BCE(reconstruction) + λ_mix · sparse mixing + λ_zero · zero reconstruction + λ_z · L2(encodings)

Every term follows the paper's equation; where the paper leaves a detail open, the authors' released
code (github.com/webstah/self-supervised-bss-via-multi-encoder-ae) decides. Where the two differ
the paper wins, and docs/method.md says how to get the code's behaviour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LossWeights:
    """Weights of the loss terms (defaults for ECG/PPG).

    Attributes
    ----------
    mix : float
        λ_mix, sparse mixing loss.
    zero : float
        λ_zero, zero-reconstruction loss.
    z : float
        λ_z, L2 penalty on the encodings.
    mix_scaling : {"uniform", "position"}
        How off-diagonal blocks are scaled (see :func:`sparse_mixing_loss`).
    mix_depth : {"none", "inv_sq"}
        Per-layer weight of the mixing loss: ``"none"`` weighs every mixing layer 1; ``"inv_sq"``
        weighs the k-th mixing layer (k = 1 nearest the encodings) by 1/k^2, as in the authors'
        follow-up (heart rate from noisy PPG): the first layers, where the sources meet, matter most.
    lowfreq : float
        Weight of a low-frequency reconstruction term: mean squared error between the output and
        the input after both are averaged over ``lowfreq_s`` seconds (0 = off). BCE over 12,288
        samples is dominated by the sharp beats; this term makes the slow part (where breathing
        lives: baseline wander, pulse amplitude envelope) count on its own.
    lowfreq_s : float
        Averaging window of that term in s.
    """

    mix: float = 1e-3
    zero: float = 1e-2
    z: float = 1e-2
    mix_scaling: str = "uniform"
    mix_depth: str = "none"
    lowfreq: float = 0.0
    lowfreq_s: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between output logits and the min-max scaled input (values in [0, 1])."""
    return F.binary_cross_entropy_with_logits(logits, target)


def _as_in_out(w: torch.Tensor, transposed: bool) -> torch.Tensor:
    """View a weight as ``(in, out, ...)``, the paper's block layout: Conv1d and Linear store
    ``(out, in, ...)``; ConvTranspose (the authors' decoder) stores ``(in, out, ...)`` already."""
    return w if transposed else w.transpose(0, 1)


def block_factors(n_groups: int, scaling: str) -> torch.Tensor:
    """Per-block factors of the sparse mixing loss, ``(N, N)``, row = input group, column = output group.

    ``"uniform"`` (paper Eq. 11): 1 off the diagonal. ``"position"`` (paper Eq. 14, the authors'
    ``WeightSeparationLossAlternative``): row ``r`` (input group r) contributes the mean |w| of the
    strip of blocks right of the diagonal (columns ``> r``) and of the strip left of it (columns
    ``< r``), so a block in a strip of ``m`` blocks weighs ``1 / m``: ``1 / (N - 1 - r)`` right of the
    diagonal, ``1 / r`` left of it. The diagonal is 0.

    Examples
    --------
    >>> block_factors(3, "position")
    tensor([[0.0000, 0.5000, 0.5000],
            [1.0000, 0.0000, 1.0000],
            [0.5000, 0.5000, 0.0000]])
    """
    if scaling not in ("uniform", "position"):
        raise ValueError(f"unknown mixing-loss scaling '{scaling}'")
    n = n_groups
    f = torch.zeros(n, n, dtype=torch.float64)
    for r in range(n):
        for c in range(n):
            if c == r:
                continue
            if scaling == "uniform":
                f[r, c] = 1.0
            else:
                f[r, c] = 1.0 / (n - 1 - r) if c > r else 1.0 / r
    return f.float()


def sparse_mixing_loss(layers: list[nn.Module], n_groups: int, scaling: str = "uniform",
                       depth: str = "none") -> torch.Tensor:
    """L1 of the off-diagonal blocks of decoder weights (paper Eqs. 11 and 14).

    Each weight is viewed as ``(in, out, k)`` and split into ``N x N`` blocks ``B[i, j]``: input
    group ``i`` (the channels that carry encoder ``i``'s pathway into the layer) to output group
    ``j``. Diagonal blocks are free; every off-diagonal block adds ``f[i, j] * mean |B[i, j]|``
    (the mean over its input channels, output channels and kernel taps; ``f`` from
    :func:`block_factors`), so each encoder keeps its own pathway to the output.

    Parameters
    ----------
    layers : list of nn.Module
        Conv1d (weight ``(out, in, k)``), ConvTranspose1d (weight ``(in, out, k)``) or Linear
        (``(out, in)``) layers; the output layer must not be among them.
    n_groups : int
        Number of encoders N.
    scaling : {"uniform", "position"}
        ``"uniform"``: Eq. 11, every off-diagonal block contributes its mean |w| (α = 1 / block
        size), as the authors' ``WeightSeparationLoss`` (their triangles & circles runs).
        ``"position"``: Eq. 14, strips of blocks right and left of the diagonal per input group
        each contribute their mean |w|, as the authors' ``WeightSeparationLossAlternative``
        (their ECG/PPG runs).
    depth : {"none", "inv_sq"}
        ``"inv_sq"``: the k-th layer's term (k = 1 for the first) is weighted 1/k^2.

    Returns
    -------
    Tensor, scalar
    """
    if depth not in ("none", "inv_sq"):
        raise ValueError(f"unknown mixing-loss depth weighting '{depth}'")
    n = n_groups
    factors = block_factors(n, scaling)
    off = ~torch.eye(n, dtype=torch.bool)
    total = None
    for depth_k, layer in enumerate(layers, start=1):
        w = _as_in_out(layer.weight, isinstance(layer, nn.modules.conv._ConvTransposeNd))
        bi, bo = w.shape[0] // n, w.shape[1] // n
        if bi == 0 or bo == 0:
            continue
        a = w.abs()
        if w.dim() > 2:
            a = a.flatten(2).mean(-1)  # mean over the kernel taps
        # block means: (n, bi, n, bo) -> (n, n), rows = input groups
        means = a[: n * bi, : n * bo].reshape(n, bi, n, bo).mean(dim=(1, 3))
        f = factors.to(device=means.device, dtype=means.dtype)
        # sum the off-diagonal entries only (a total minus the diagonal would leave rounding residue)
        term = (means * f)[off.to(means.device)].sum()
        if depth == "inv_sq":
            term = term / depth_k ** 2
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


def zero_reconstruction_loss(model, time_steps: int, device=None) -> torch.Tensor:
    """Decoder output for an all-zero encoding must be the zero signal.

    One all-zero encoding suffices: every sample of a batch would give the same output. The
    normalisation layers run with frozen affine parameters (``decode(freeze_norm=True)``); the
    decoder has GroupNorm only, so no running statistics are touched.

    Parameters
    ----------
    model : MultiEncoderAE
    time_steps : int
        Encoding length T.
    """
    p = next(model.parameters())
    z0 = torch.zeros(1, model.config.hidden, time_steps, device=device or p.device, dtype=p.dtype)
    logits = model.decode(z0, freeze_norm=True)
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def encoding_l2(z: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean over the N encoders of the mean squared encoding (paper Eq. 9).

    ``(1 / N) * sum_n mean(z_n ** 2)``, each mean over batch, channels and time. The authors'
    released code adds ``mean(z_n ** 2)`` over encoders without the ``1 / N``: their ``z = 1e-2``
    is ``z = N * 1e-2`` here (docs/method.md).

    Parameters
    ----------
    z : Tensor, shape (batch, hidden, T)
        Concatenated encodings, ``hidden / N`` channels per encoder.
    n_groups : int
        Number of encoders N.
    """
    b, c, t = z.shape
    return (z.float() ** 2).reshape(b, n_groups, c // n_groups, t).mean(dim=(0, 2, 3)).mean()


def lowfreq_loss(logits: torch.Tensor, target: torch.Tensor, window: int) -> torch.Tensor:
    """MSE between the sigmoid output and the target after a moving average of ``window`` samples
    (evaluated every ``window // 4`` samples)."""
    stride = max(1, window // 4)
    a = F.avg_pool1d(torch.sigmoid(logits), window, stride)
    b = F.avg_pool1d(target, window, stride)
    return F.mse_loss(a, b)


def total_loss(model, x: torch.Tensor, weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """All four terms on one batch.

    Parameters
    ----------
    model : MultiEncoderAE
    x : Tensor, shape (batch, 1, L)
        Min-max scaled segments.

    Returns
    -------
    loss : Tensor, scalar
    parts : dict of str to float
        ``recon``, ``mix``, ``zero``, ``z`` (unweighted) and ``total``.
    """
    logits, z = model(x)
    n = model.config.n_encoders
    recon = reconstruction_loss(logits.float(), x.float())
    mix = (sparse_mixing_loss(model.mixing_layers(), n, weights.mix_scaling, weights.mix_depth) if weights.mix
           else x.new_zeros(()))
    zero = zero_reconstruction_loss(model, z.shape[-1]) if weights.zero else x.new_zeros(())
    zl2 = encoding_l2(z, n) if weights.z else x.new_zeros(())
    loss = recon + weights.mix * mix + weights.zero * zero.float() + weights.z * zl2
    parts = {"recon": float(recon.detach()), "mix": float(mix.detach()), "zero": float(zero.detach()),
             "z": float(zl2.detach())}
    if weights.lowfreq:
        from resp_sep.preprocess import MODEL_FS

        lf = lowfreq_loss(logits.float(), x.float(), max(1, int(round(weights.lowfreq_s * MODEL_FS))))
        loss = loss + weights.lowfreq * lf
        parts["lowfreq"] = float(lf.detach())
    parts["total"] = float(loss.detach())
    return loss, parts


def reconstruction_references(x, fs: float) -> dict[str, float]:
    """Reconstruction BCE of simple references on min-max scaled segments, to judge a model's BCE.

    BCE against a target in (0, 1) never reaches 0: its minimum, reached by predicting the target
    itself, is the target's own mean binary entropy (the *floor*). A model's reconstruction is
    judged by its excess over that floor, and against what trivial predictions achieve.

    Parameters
    ----------
    x : ndarray, shape (n_segments, L)
        Min-max scaled segments (values in [0, 1]).
    fs : float
        Sampling rate in Hz.

    Returns
    -------
    dict
        Mean BCE in nats per sample of: ``floor`` (the target itself), ``segment_mean`` (each
        segment's mean, a constant per segment), ``lowpass_1hz``, ``lowpass_5hz`` and
        ``lowpass_20hz`` (the target low-passed, zero-phase 4th-order Butterworth: what a model
        that reproduces only the drift, the pulse shape or the QRS-less waveform would reach).
    """
    import numpy as np
    from scipy import signal as sps

    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    eps = 1e-6

    def bce(pred):
        p = np.clip(pred, eps, 1 - eps)
        return float(np.mean(-(x * np.log(p) + (1 - x) * np.log(1 - p))))

    out = {"floor": bce(x), "segment_mean": bce(np.broadcast_to(x.mean(-1, keepdims=True), x.shape))}
    for f in (1.0, 5.0, 20.0):
        sos = sps.butter(4, f, btype="low", fs=fs, output="sos")
        out[f"lowpass_{f:g}hz"] = bce(sps.sosfiltfilt(sos, x, axis=-1))
    return out
