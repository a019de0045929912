"""The separator: a 1-D convolutional multi-encoder autoencoder (Webster & Lee).

N encoders see the same input segment; their encodings are concatenated on the channel axis and
one decoder reconstructs the input. A source is estimated by keeping one encoding and zeroing the
others (:meth:`MultiEncoderAE.mask`) before decoding.

The N encoders are computed together as grouped convolutions (``groups=N``): channel group ``i``
of every encoder layer only sees group ``i`` of the layer before, which is exactly N independent
encoders, but one kernel launch instead of N. BatchNorm over the N*c channels is per-channel and
therefore per-encoder too.

Shapes: input ``(batch, 1, L)`` with ``L = 12,288`` samples; encodings ``(batch, hidden, L / 2**k)``
(48 time steps for 8 blocks), channel group ``i`` (``hidden / N`` channels) belonging to encoder
``i``; output logits ``(batch, 1, L)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

MODEL_NAME = "MultiEncoderAE"


@dataclass
class ModelConfig:
    """Constructor arguments of :class:`MultiEncoderAE` (stored in every checkpoint).

    Attributes
    ----------
    n_encoders : int
        Number of encoders N (sources the model can separate).
    channels : list of int
        Encoder channel schedule, summed over encoders, one entry per block (each block halves
        the time axis); divided by N per encoder.
    dec_channels : list of int or None
        Output channels of the decoder's upsampling convolutions, one per block. Default: the
        published decoder, ``channels`` reversed without its first entry, then ``channels[0]``
        (``[256, 128, 128, 64, 64, 32, 32, 32]`` for the published encoder): block ``j`` works at
        the width the encoder had at the same time resolution.
    dec_in_channels : int or None
        Output channels of the decoder's first (1x1) convolution. Default: ``channels[-1]`` when
        ``dec_channels`` is left to its default (the published decoder), else ``dec_channels[0]``
        (models trained before 2026-12 used ``channels`` reversed for ``dec_channels`` and this rule,
        so their checkpoints, which store ``dec_channels``, load unchanged).
    hidden : int
        Channels of the concatenated encoding (``hidden / N`` per encoder).
    kernel_size : int
        Convolution kernel size (samples).
    bn_momentum : float
        BatchNorm running-statistics momentum (PyTorch convention; 0.1 is steadier than the
        authors' 0.8, whose eval statistics follow the last batch). It only changes the running
        statistics used in eval mode, never a training step (docs/method.md).
    in_channels : int
        Input channels (1: one ECG or PPG lead).
    block_diagonal_init : bool
        Start the decoder's mixing weights block-diagonal (off-diagonal blocks zero), so each
        encoder has its own pathway from the first step instead of having the sparse mixing loss
        carve it out. Not in the published recipe (default False).
    input_stride : int
        Cheaper compute (issue 10, experiment (f)): the network runs at ``1 / input_stride`` of the
        input rate. The input is averaged over non-overlapping blocks of ``input_stride`` samples
        (200 Hz -> 100 Hz for 2) before the encoders, and the output logits are linearly
        interpolated back to the input rate, so the model still maps ``L`` samples to ``L``
        samples and everything around it (scaling, stitching, rates) is unchanged. ``L`` must be
        divisible by ``input_stride * 2 ** blocks``. Default 1 (the published model).
    decoder_init : {"transposed", "conv"}
        Initial weights of the decoder's upsampling convolutions. The authors' decoder uses
        stride-1 ``ConvTranspose1d`` layers, the same function as these ``Conv1d`` layers (flipped
        kernel, swapped channel axes), but PyTorch initialises a transposed convolution from its
        *output* width (bound ``1 / sqrt(out * k)``) instead of its input width; ``"transposed"``
        draws them as the authors' layers are drawn (default), ``"conv"`` keeps PyTorch's Conv1d
        default (models trained before 2026-12). Only the starting point differs.
    """

    n_encoders: int = 8
    channels: list[int] = field(default_factory=lambda: [32, 32, 64, 64, 128, 128, 256, 256])
    dec_channels: list[int] | None = None
    hidden: int = 64
    kernel_size: int = 7
    bn_momentum: float = 0.1
    in_channels: int = 1
    block_diagonal_init: bool = False
    input_stride: int = 1
    dec_in_channels: int | None = None
    decoder_init: str = "transposed"

    def __post_init__(self):
        n = self.n_encoders
        if n < 1:
            raise ValueError("n_encoders must be >= 1")
        if not isinstance(self.input_stride, int) or self.input_stride < 1:
            raise ValueError(f"input_stride must be a positive integer (got {self.input_stride!r})")
        if self.decoder_init not in ("transposed", "conv"):
            raise ValueError(f"decoder_init must be 'transposed' or 'conv' (got {self.decoder_init!r})")
        if self.dec_channels is None:
            self.dec_channels = published_decoder(self.channels)
            if self.dec_in_channels is None:
                self.dec_in_channels = self.channels[-1]
        if self.dec_in_channels is None:
            self.dec_in_channels = self.dec_channels[0]
        for c in list(self.channels) + list(self.dec_channels) + [self.hidden, self.dec_in_channels]:
            if c % n:
                raise ValueError(f"every channel count must be divisible by n_encoders={n} (got {c})")
        if len(self.dec_channels) != len(self.channels):
            raise ValueError("decoder and encoder need the same number of blocks")

    @property
    def downsample(self) -> int:
        """Factor between input samples and encoding time steps (input_stride * 2 ** blocks)."""
        return self.input_stride * 2 ** len(self.channels)

    def to_dict(self) -> dict:
        return asdict(self)


def published_decoder(channels: list[int]) -> list[int]:
    """The authors' decoder widths for an encoder schedule: ``channels`` reversed without its first
    entry, then ``channels[0]`` (their ``DecoderBlock(channels[c], channels[c - 1])`` chain)."""
    rev = list(reversed(channels))
    return rev[1:] + [channels[0]]


def upsample_logits(logits: torch.Tensor, stride: int) -> torch.Tensor:
    """Output logits ``(b, c, T)`` at the network's rate -> ``(b, c, T * stride)`` at the input rate
    (linear interpolation; identity for ``stride`` 1)."""
    if stride == 1:
        return logits
    return F.interpolate(logits, scale_factor=stride, mode="linear", align_corners=False)


class MultiEncoderAE(nn.Module):
    """Multi-encoder, single-decoder 1-D convolutional autoencoder.

    Parameters
    ----------
    config : ModelConfig, optional
        Architecture; keyword arguments override its fields.
    """

    def __init__(self, config: ModelConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            config = ModelConfig(**{**config.to_dict(), **kwargs})
        self.config = config
        n, k = config.n_encoders, config.kernel_size
        pad = k // 2

        # ---- encoders (grouped: N independent stacks)
        layers: list[nn.Module] = []
        prev = config.in_channels * n  # the input is repeated once per encoder
        for c in config.channels:
            layers += [
                nn.Conv1d(prev, c, k, padding=pad, groups=n),
                nn.ReLU(inplace=True),
                nn.BatchNorm1d(c, momentum=config.bn_momentum),
                nn.Conv1d(c, c, k, padding=pad, groups=n),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(2),
                nn.BatchNorm1d(c, momentum=config.bn_momentum),
            ]
            prev = c
        layers += [nn.Conv1d(prev, config.hidden, 1, groups=n), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*layers)

        # ---- decoder (dense across encoder groups: the sparse mixing loss keeps it block-diagonal)
        dec = config.dec_channels
        self.dec_in = nn.Conv1d(config.hidden, config.dec_in_channels, 1)
        self.dec_in_norm = nn.GroupNorm(n, config.dec_in_channels)
        self.dec_convs = nn.ModuleList()
        self.dec_norms = nn.ModuleList()
        prev = config.dec_in_channels
        for c in dec:
            self.dec_convs.append(nn.Conv1d(prev, c, k, padding=pad))
            self.dec_norms.append(nn.GroupNorm(n, c))
            prev = c
        self.dec_out = nn.utils.parametrizations.weight_norm(nn.Conv1d(prev, config.in_channels, 1))
        if config.decoder_init == "transposed":
            self._transposed_init()
        if config.block_diagonal_init:
            self._zero_off_diagonal()

    @torch.no_grad()
    def _transposed_init(self) -> None:
        # nn.ConvTranspose1d(in, out, k) stores (in, out, k) and PyTorch's default (kaiming_uniform
        # with a = sqrt(5), bias alike) takes fan_in from dim 1, i.e. out * k: bound 1 / sqrt(out * k).
        for conv in self.dec_convs:
            bound = 1.0 / math.sqrt(conv.out_channels * conv.kernel_size[0])
            conv.weight.uniform_(-bound, bound)
            conv.bias.uniform_(-bound, bound)

    @torch.no_grad()
    def _zero_off_diagonal(self) -> None:
        n = self.config.n_encoders
        for layer in self.mixing_layers():
            w = layer.weight
            o, i = w.shape[0] // n, w.shape[1] // n
            mask = torch.zeros(w.shape[0], w.shape[1], dtype=torch.bool)
            for g in range(n):
                mask[g * o:(g + 1) * o, g * i:(g + 1) * i] = True
            w[~mask] = 0.0

    # ------------------------------------------------------------------------------ three stages

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encode min-max scaled segments.

        Parameters
        ----------
        x : Tensor, shape (batch, in_channels, L)

        Returns
        -------
        Tensor, shape (batch, hidden, L / downsample)
            Concatenated encodings; channels ``[i*h, (i+1)*h)`` with ``h = hidden / N`` belong to
            encoder ``i``.
        """
        n = self.config.n_encoders
        if self.config.input_stride > 1:
            x = F.avg_pool1d(x, self.config.input_stride)
        return self.encoder(x.repeat(1, n, 1) if n > 1 else x)

    def mask(self, z: torch.Tensor, keep: int | list[int]) -> torch.Tensor:
        """Zero every encoding except those of the encoders in ``keep``.

        Parameters
        ----------
        z : Tensor, shape (batch, hidden, T)
        keep : int or list of int
            Encoder indices to keep.

        Returns
        -------
        Tensor, same shape as ``z``
        """
        keep = [keep] if isinstance(keep, int) else list(keep)
        n = self.config.n_encoders
        h = self.config.hidden // n
        m = torch.zeros(n, dtype=z.dtype, device=z.device)
        m[keep] = 1
        return z * m.repeat_interleave(h).view(1, -1, 1)

    def decode(self, z: torch.Tensor, freeze_norm: bool = False) -> torch.Tensor:
        """Decode encodings into output logits.

        Parameters
        ----------
        z : Tensor, shape (batch, hidden, T)
        freeze_norm : bool
            Use the normalisation layers' affine parameters without letting gradients reach them
            (the zero-reconstruction pass must not move them).

        Returns
        -------
        Tensor, shape (batch, in_channels, T * downsample)
            Logits; ``torch.sigmoid`` gives the min-max scaled signal.
        """
        h = F.relu(self.dec_in(z))
        h = self._norm(self.dec_in_norm, h, freeze_norm)
        for conv, norm in zip(self.dec_convs, self.dec_norms):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = F.relu(conv(h))
            h = self._norm(norm, h, freeze_norm)
        return upsample_logits(self.dec_out(h), self.config.input_stride)

    @staticmethod
    def _norm(norm: nn.GroupNorm, h: torch.Tensor, freeze: bool) -> torch.Tensor:
        if not freeze:
            return norm(h)
        w = None if norm.weight is None else norm.weight.detach()
        b = None if norm.bias is None else norm.bias.detach()
        return F.group_norm(h, norm.num_groups, w, b, norm.eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruct the input.

        Returns
        -------
        logits : Tensor, shape (batch, in_channels, L)
        z : Tensor, shape (batch, hidden, L / downsample)
        """
        z = self.encode(x)
        return self.decode(z), z

    def separate(self, x: torch.Tensor, encoders: list[int] | None = None) -> torch.Tensor:
        """Source estimates by encoding masking.

        Parameters
        ----------
        x : Tensor, shape (batch, in_channels, L)
        encoders : list of int, optional
            Which sources to decode (default: all N).

        Returns
        -------
        Tensor, shape (batch, len(encoders), L)
            Sigmoid outputs (min-max scaled domain), one per kept encoder.
        """
        encoders = list(range(self.config.n_encoders)) if encoders is None else list(encoders)
        z = self.encode(x)
        outs = [torch.sigmoid(self.decode(self.mask(z, i)))[:, 0] for i in encoders]
        return torch.stack(outs, dim=1)

    def mixing_layers(self) -> list[nn.Module]:
        """Decoder layers whose weights mix encoder groups (the output layer excluded)."""
        return [self.dec_in, *self.dec_convs]
