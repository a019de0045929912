"""The paper-scale recipes (models/paper-*.toml) build the published model and train one step on CPU."""

from pathlib import Path

import pytest
import torch

from resp_sep.model import MultiEncoderAE
from resp_sep.train import TrainConfig, make_optimizer, training_step

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.mark.parametrize("name, signal, epochs", [("paper-ecg", "ecg", 25), ("paper-ppg", "ppg", 50)])
def test_paper_recipe_builds_published_model_and_steps(name, signal, epochs):
    cfg = TrainConfig.from_toml(MODELS / f"{name}.toml")
    assert cfg.signal == signal and cfg.epochs == epochs and cfg.batch_size == 256
    assert (cfg.lr, cfg.weight_decay, cfg.grad_clip, cfg.bf16) == (1e-3, 1e-6, 0.5, False)
    w = cfg.loss_weights()
    assert (w.mix, w.mix_scaling, w.zero, w.z) == (1e-3, "position", 1e-2, 1e-2)
    torch.manual_seed(0)
    m = MultiEncoderAE(cfg.model_config())
    n = m.config.n_encoders
    assert n == 8 and m.config.hidden == 64
    # each encoder (the authors' ConvolutionalEncoder): blocks of 4, 4, 8, 8, 16, 16, 32, 32 channels, kernel 7,
    # then a 1x1 conv to hidden / N = 8 channels
    convs = [layer for layer in m.encoder if isinstance(layer, torch.nn.Conv1d)]
    per_encoder = [c.out_channels // n for c in convs]
    assert per_encoder == [4, 4, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 8]
    assert all(c.groups == n for c in convs) and convs[0].kernel_size == (7,)
    # the decoder (their ConvolutionalDecoder with channels [32] + channels): 1x1 conv 64 -> 256, then
    # upsampling blocks 256->256->128->128->64->64->32->32->32, GroupNorm(8) after each, weight-normed 1x1 output
    assert (m.dec_in.in_channels, m.dec_in.out_channels) == (64, 256)
    assert [c.out_channels for c in m.dec_convs] == [256, 128, 128, 64, 64, 32, 32, 32]
    assert all(g.num_groups == 8 for g in [m.dec_in_norm, *m.dec_norms])
    assert m.dec_out.in_channels == 32 and hasattr(m.dec_out, "parametrizations")
    # one training step on CPU (two segments of the published 12,288 samples) moves the weights
    opt = make_optimizer(m, cfg.lr, cfg.weight_decay)
    before = m.dec_convs[0].weight.detach().clone()
    x = torch.rand(2, 1, 12_288)
    parts = training_step(m, opt, x, w, cfg.grad_clip)
    assert all(torch.isfinite(torch.tensor(v)) for v in parts.values())
    assert parts["mix"] > 0 and parts["zero"] > 0 and parts["z"] > 0
    assert not torch.equal(before, m.dec_convs[0].weight)
