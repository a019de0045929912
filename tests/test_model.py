"""Separator model and losses: shapes, masking, the sparse mixing loss, the zero-reconstruction pass."""

import copy

import pytest
import torch
from torch import nn

from resp_sep.losses import (
    LossWeights,
    encoding_l2,
    sparse_mixing_loss,
    total_loss,
    zero_reconstruction_loss,
)
from resp_sep.model import ModelConfig, MultiEncoderAE

TINY = dict(n_encoders=4, channels=[8, 8, 16], hidden=8, kernel_size=5)


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    return MultiEncoderAE(**{**TINY, **kw})


def test_default_architecture_shapes():
    m = MultiEncoderAE()
    assert m.config.n_encoders == 8 and m.config.hidden == 64
    x = torch.rand(2, 1, 12_288)
    logits, z = m(x)
    assert logits.shape == (2, 1, 12_288)
    assert z.shape == (2, 64, 48)  # 12,288 samples -> 48 time steps, hidden/N = 8 per encoder
    # each encoder's first conv has channels[0] / N = 4 output channels and sees only its input copy
    first = m.encoder[0]
    assert first.groups == 8 and first.out_channels == 32 and first.in_channels == 8


def test_encoders_are_independent():
    """Grouped convolutions must be N separate encoders: perturbing one encoder's weights
    changes only that encoder's encoding."""
    m = tiny_model().eval()
    x = torch.rand(3, 1, 256)
    z0 = m.encode(x)
    with torch.no_grad():
        w = m.encoder[0].weight  # (N*c, 1, k): rows of encoder 1 are [c, 2c)
        c = w.shape[0] // m.config.n_encoders
        w[c:2 * c] += 0.5
    z1 = m.encode(x)
    h = m.config.hidden // m.config.n_encoders
    changed = [(z1[:, i * h:(i + 1) * h] - z0[:, i * h:(i + 1) * h]).abs().max().item() > 0 for i in range(4)]
    assert changed == [False, True, False, False]


def test_mask_keeps_exactly_one_encoding():
    m = tiny_model()
    z = torch.rand(2, 8, 6) + 0.1
    for k in range(4):
        zk = m.mask(z, k)
        h = 2
        for i in range(4):
            block = zk[:, i * h:(i + 1) * h]
            if i == k:
                assert torch.equal(block, z[:, i * h:(i + 1) * h])
            else:
                assert torch.count_nonzero(block) == 0


def test_separate_decodes_each_kept_encoder():
    m = tiny_model().eval()
    x = torch.rand(2, 1, 64)
    y = m.separate(x, [1, 3])
    assert y.shape == (2, 2, 64)
    z = m.encode(x)
    expect = torch.sigmoid(m.decode(m.mask(z, 3)))[:, 0]
    assert torch.allclose(y[:, 1], expect)


def _block_diag(out_ch, in_ch, n, k=3, transposed=False):
    w = torch.zeros(out_ch, in_ch, k)
    o, i = out_ch // n, in_ch // n
    for g in range(n):
        w[g * o:(g + 1) * o, g * i:(g + 1) * i] = torch.randn(o, i, k)
    return w.transpose(0, 1).contiguous() if transposed else w


@pytest.mark.parametrize("scaling", ["uniform", "position"])
def test_sparse_mixing_zero_for_block_diagonal(scaling):
    conv = nn.Conv1d(12, 8, 3)
    tconv = nn.ConvTranspose1d(12, 8, 3)  # weight (in=12, out=8, k)
    with torch.no_grad():
        conv.weight.copy_(_block_diag(8, 12, 4))
        tconv.weight.copy_(_block_diag(8, 12, 4, transposed=True))
    assert sparse_mixing_loss([conv], 4, scaling).item() == 0.0
    assert sparse_mixing_loss([tconv], 4, scaling).item() == 0.0


@pytest.mark.parametrize("scaling", ["uniform", "position"])
@pytest.mark.parametrize("transposed", [False, True])
def test_sparse_mixing_grows_with_off_diagonal_mass(scaling, transposed):
    layer = nn.ConvTranspose1d(12, 8, 3) if transposed else nn.Conv1d(12, 8, 3)
    base = _block_diag(8, 12, 4, transposed=transposed)
    losses = []
    for eps in (0.0, 0.1, 0.5, 2.0):
        w = base.clone()
        wo = w.transpose(0, 1) if transposed else w  # (out, in, k) view
        wo[0:2, 3:6] += eps  # out group 0 <- in group 1: off-diagonal
        with torch.no_grad():
            layer.weight.copy_(w)
        losses.append(sparse_mixing_loss([layer], 4, scaling).item())
    assert losses[0] == 0.0
    assert losses[1] < losses[2] < losses[3]
    # adding mass to a diagonal block must not change it
    w = base.clone()
    wo = w.transpose(0, 1) if transposed else w
    wo[0:2, 0:3] += 5.0
    with torch.no_grad():
        layer.weight.copy_(w)
    assert sparse_mixing_loss([layer], 4, scaling).item() == 0.0


def test_sparse_mixing_uniform_value():
    """Uniform scaling: each off-diagonal block contributes its mean |w| (alpha = 1/block size)."""
    layer = nn.Conv1d(4, 4, 1, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 2, 0] = 4.0  # block (0, 1) of a 2x2 grid of 2x2 blocks
    assert sparse_mixing_loss([layer], 2, "uniform").item() == pytest.approx(1.0)


def test_output_layer_excluded_from_mixing():
    m = tiny_model()
    layers = m.mixing_layers()
    assert all(layer is not m.dec_out for layer in layers)
    assert len(layers) == 1 + len(m.config.dec_channels)


def test_zero_pass_leaves_norm_stats_and_affine_untouched():
    m = tiny_model()
    m.train()
    # make GroupNorm affine parameters non-trivial so a gradient would show
    with torch.no_grad():
        for gn in [m.dec_in_norm, *m.dec_norms]:
            gn.weight.uniform_(0.5, 1.5)
            gn.bias.uniform_(-0.5, 0.5)
    bn_before = {k: v.clone() for k, v in m.state_dict().items() if "running" in k or "num_batches" in k}
    loss = zero_reconstruction_loss(m, time_steps=4)
    loss.backward()
    for gn in [m.dec_in_norm, *m.dec_norms]:
        assert gn.weight.grad is None or torch.count_nonzero(gn.weight.grad) == 0
        assert gn.bias.grad is None or torch.count_nonzero(gn.bias.grad) == 0
    # the decoder convolutions do learn from it
    assert m.dec_in.weight.grad is not None and m.dec_in.bias.grad.abs().sum() > 0
    for k, v in m.state_dict().items():
        if k in bn_before:
            assert torch.equal(v, bn_before[k]), k
    # and the encoders (BatchNorm) were not involved at all
    assert all(p.grad is None for p in m.encoder.parameters())


def test_total_loss_terms_and_backward():
    m = tiny_model()
    x = torch.rand(4, 1, 64)
    loss, parts = total_loss(m, x, LossWeights())
    assert set(parts) == {"recon", "mix", "zero", "z", "total"}
    assert parts["total"] == pytest.approx(
        parts["recon"] + 1e-3 * parts["mix"] + 1e-2 * parts["zero"] + 1e-2 * parts["z"], rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())


def test_encoding_l2():
    z = torch.ones(2, 8, 5) * 2.0
    assert encoding_l2(z, 4).item() == pytest.approx(4.0)  # mean over encoders (paper Eq. 9)


def test_config_validation():
    with pytest.raises(ValueError):
        ModelConfig(n_encoders=3, channels=[8, 8], hidden=8)
    cfg = ModelConfig(**TINY)
    assert cfg.dec_in_channels == 16 and cfg.dec_channels == [8, 8, 8] and cfg.downsample == 8
    with pytest.raises(ValueError):
        ModelConfig(**TINY, decoder_init="xavier")


def test_published_decoder_widths():
    """The authors' 1-D decoder for channels [32, 32, 64, 64, 128, 128, 256, 256]: a 1x1 conv to 256,
    then upsampling blocks 256->256, 256->128, 128->128, 128->64, 64->64, 64->32, 32->32, 32->32."""
    m = MultiEncoderAE()
    assert m.dec_in.out_channels == 256
    assert [(c.in_channels, c.out_channels) for c in m.dec_convs] == [
        (256, 256), (256, 128), (128, 128), (128, 64), (64, 64), (64, 32), (32, 32), (32, 32)]
    # a checkpoint of the earlier default (decoder = channels reversed) still builds the same model
    old = ModelConfig(channels=[16, 16, 32], dec_channels=[32, 16, 16], n_encoders=4, hidden=8)
    assert old.dec_in_channels == 32
    assert [(c.in_channels, c.out_channels) for c in MultiEncoderAE(old).dec_convs] == [
        (32, 32), (32, 16), (16, 16)]


def test_transposed_decoder_init_scale():
    """decoder_init 'transposed' draws like nn.ConvTranspose1d: bound 1/sqrt(out * k), not 1/sqrt(in * k)."""
    torch.manual_seed(0)
    m = MultiEncoderAE(n_encoders=2, channels=[8, 64], hidden=8, kernel_size=7)  # decoder 64 -> 8, 8 -> 8
    wide_in = m.dec_convs[0]
    assert (wide_in.in_channels, wide_in.out_channels) == (64, 8)
    bound_t, bound_c = 1 / (8 * 7) ** 0.5, 1 / (64 * 7) ** 0.5
    assert wide_in.weight.abs().max().item() <= bound_t
    assert wide_in.weight.abs().max().item() > 0.9 * bound_t > 2 * bound_c
    c = MultiEncoderAE(n_encoders=2, channels=[8, 64], hidden=8, kernel_size=7, decoder_init="conv")
    assert c.dec_convs[0].weight.abs().max().item() <= bound_c


def test_deterministic_init():
    a, b = tiny_model(seed=3), tiny_model(seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb)
    c = copy.deepcopy(a)
    assert torch.equal(c.dec_in.weight, a.dec_in.weight)


def test_block_diagonal_init_zeroes_mixing():
    from resp_sep.losses import sparse_mixing_loss

    m = tiny_model(block_diagonal_init=True)
    assert sparse_mixing_loss(m.mixing_layers(), 4).item() == 0.0
    assert tiny_model().config.block_diagonal_init is False
    assert sparse_mixing_loss(tiny_model().mixing_layers(), 4).item() > 0
