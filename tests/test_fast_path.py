"""The fast extraction path (RespirationNet, batching, inference mode) against the plain path.

Tolerances
----------
* float64: the fast network is the same function as the masked decode, so both agree to ~1e-12.
* float32 (what runs): the polyphase kernels are sums of taps and the sliced convolutions sum in
  another order, ~1e-7 relative per layer, which the decoder's GroupNorms can amplify on random
  weights. The waveform is ``sigmoid(logits) * span`` with ``span`` the segment's range, so we
  bound the difference in that output domain: ``max |fast - plain| <= 1e-5 * (max(x) - min(x))``
  (measured: 1e-6 to 4e-6 on random half-width and tiny models; relative to the input's standard
  deviation that is 0.5e-5 to 7e-5).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resp_sep.model import MultiEncoderAE
from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN, resample
from resp_sep.separate import (
    RespirationNet,
    Separator,
    _polyphase,
    extract_plain,
    overlap_add,
    segment_starts,
)
from resp_sep.simulate import simulate

SMALL = {"n_encoders": 4, "channels": [8, 8, 16, 16, 32, 32], "hidden": 16, "kernel_size": 7}
FS = 256.0
FP32_TOL = 1e-5  # of the input's peak-to-peak range (see the module docstring)


def random_model(seed=0, **kw):
    """A model with random weights and non-trivial BatchNorm/GroupNorm statistics (eval mode)."""
    torch.manual_seed(seed)
    m = MultiEncoderAE(**{**SMALL, **kw})
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.GroupNorm)):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
            if isinstance(mod, nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.fixture(scope="module")
def ecg():
    """A simulated 10-minute ECG at 256 Hz (artefacts included)."""
    return simulate(duration_s=600, fs=FS, seed=4).ecg


# ---------------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("hop", [SEGMENT_LEN // 2, SEGMENT_LEN])
@pytest.mark.parametrize("k", [0, 2])
def test_fast_path_equals_plain_path(ecg, hop, k):
    m = random_model(seed=k)
    fast = Separator(m, k, torch.device("cpu"), sign=-1.0).extract(ecg, FS, hop=hop)
    plain = extract_plain(m, ecg, FS, k, sign=-1.0, hop=hop, batch_size=3)
    assert fast.shape == plain.shape == (round(len(ecg) / FS * 25),)
    assert np.isfinite(fast).all()
    ptp = np.ptp(resample(ecg, FS, MODEL_FS))
    assert np.max(np.abs(fast - plain)) <= FP32_TOL * ptp
    assert np.std(plain) > 10 * FP32_TOL * ptp  # the output varies far more than the tolerance


def test_slow_separator_path_equals_plain_exactly(ecg):
    """``fast=False`` (encode all, decode the masked encoding) is the plain computation itself."""
    m = random_model()
    slow = Separator(m, 1, torch.device("cpu"), fast=False).extract(ecg, FS, hop=SEGMENT_LEN // 2, batch_size=4)
    plain = extract_plain(m, ecg, FS, 1, hop=SEGMENT_LEN // 2, batch_size=4)
    np.testing.assert_allclose(slow, plain, rtol=0, atol=1e-6 * np.ptp(ecg))


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
@pytest.mark.parametrize("in_channels", [1, 2])
def test_respiration_net_is_the_masked_decode_in_float64(kernel_size, in_channels):
    m = random_model(kernel_size=kernel_size, in_channels=in_channels).double()
    x = torch.rand(3, in_channels, 1024, dtype=torch.float64)
    with torch.no_grad():
        z = m.encode(x)
        for k in range(m.config.n_encoders):
            ref = m.decode(m.mask(z, k))
            out = RespirationNet(m, k)(x)
            assert out.shape == ref.shape
            assert (out - ref).abs().max().item() < 1e-10


@pytest.mark.parametrize("k", [3, 5, 7, 9])
def test_polyphase_convolution_equals_upsample_then_convolve(k):
    torch.manual_seed(k)
    conv = nn.Conv1d(5, 6, k, padding=k // 2).double()
    h = torch.randn(2, 5, 37, dtype=torch.float64)
    w, b, pads = _polyphase(conv)
    y = F.conv1d(F.pad(h, pads), w, b)
    y = y.view(2, 6, 2, 37).transpose(2, 3).reshape(2, 6, 74)  # rows 2 o + r: phase r of channel o
    ref = conv(F.interpolate(h, scale_factor=2, mode="nearest"))
    assert (y - ref).abs().max().item() < 1e-12
    assert w.shape[-1] < k or k <= 3  # fewer taps per output pair than 2 * k


def test_fast_network_follows_weight_changes(ecg):
    """The cached RespirationNet is rebuilt when the model's weights change in place."""
    m = random_model(seed=1)
    sep = Separator(m, 0, torch.device("cpu"))
    x = ecg[: 2 * SEGMENT_LEN]
    before = sep.extract(x, FS)
    m.load_state_dict(random_model(seed=2).state_dict())
    after = sep.extract(x, FS)
    assert np.max(np.abs(after - before)) > 1e-4 * np.ptp(x)
    np.testing.assert_allclose(after, extract_plain(m, x, FS, 0, hop=SEGMENT_LEN // 2, batch_size=16),
                               rtol=0, atol=FP32_TOL * np.ptp(x))


def test_compile_flag_is_ignored_on_cpu(ecg):
    m = random_model()
    x = ecg[: 2 * SEGMENT_LEN]
    a = Separator(m, 1, torch.device("cpu"), compile=True).extract(x, FS)
    b = Separator(m, 1, torch.device("cpu")).extract(x, FS)
    np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_fast_path_close_to_fp32_plain(ecg):
    m = random_model()
    fast = Separator(m.cuda(), 1, torch.device("cuda")).extract(ecg, FS)
    plain = extract_plain(m.cpu(), ecg, FS, 1, hop=SEGMENT_LEN // 2, batch_size=8)
    assert np.max(np.abs(fast - plain)) <= 1e-2 * np.ptp(ecg)  # bf16: ~3 significant digits


# ------------------------------------------------------------------------------------ overlap-add


@pytest.mark.parametrize("n", [SEGMENT_LEN, SEGMENT_LEN + 1, 2 * SEGMENT_LEN - 1, 5 * SEGMENT_LEN + 4_321])
@pytest.mark.parametrize("hop", [SEGMENT_LEN, SEGMENT_LEN // 2, 5_000, 4_097])
def test_identity_network_overlap_add(n, hop):
    """Identity 'network': every sample covered, the input comes back (lengths not multiples of the hop)."""
    x = np.random.default_rng(n * 7 + hop).standard_normal(n) + 3.0
    y = overlap_add(x, lambda s: s.copy(), SEGMENT_LEN, hop, batch_size=3)
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-12)
    cover = np.zeros(n, int)
    for s in segment_starts(n, SEGMENT_LEN, hop):
        cover[s:s + SEGMENT_LEN] += 1
    assert cover.min() >= 1


@pytest.mark.parametrize("n", [64, 65, 100, 333, 1_000, 4_099])
@pytest.mark.parametrize("hop", [64, 32, 17, 1])
def test_identity_overlap_add_many_short_segments(n, hop):
    x = np.random.default_rng(n + hop).standard_normal(n)
    y = overlap_add(x, lambda s: s * 1.0, 64, hop, batch_size=7)
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-12)
    # a constant 'network' output of 1 gives exactly 1 everywhere: the weights are normalised
    ones = overlap_add(x, lambda s: np.ones_like(s), 64, hop, batch_size=7)
    np.testing.assert_allclose(ones, 1.0, rtol=0, atol=1e-12)


def test_identity_separator_through_extract():
    """A stand-in network that returns its input: extraction at 200 Hz returns the signal."""
    class Identity(Separator):
        def respiration_segments(self, segs):
            return np.asarray(segs, dtype=np.float32)

    x = np.random.default_rng(0).standard_normal(3 * SEGMENT_LEN + 777) + 2.5
    y = Identity(None, 0, torch.device("cpu")).extract(x, MODEL_FS, out_fs=MODEL_FS, hop=5_000)
    np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6)


def test_strided_front_end_model_and_fast_path():
    """input_stride 2 (experiment (f)): the network runs at half the rate, maps L samples to L, and
    the fast path computes the same function."""
    from resp_sep.model import ModelConfig

    m = random_model(input_stride=2, channels=[8, 8, 16, 16, 32]).double()
    assert m.config.downsample == 64
    x = torch.rand(2, 1, 2048, dtype=torch.float64)
    with torch.no_grad():
        z = m.encode(x)
        assert z.shape[-1] == 2048 // 64
        ref = m.decode(m.mask(z, 1))
        assert ref.shape == x.shape
        out = RespirationNet(m, 1)(x)
    assert (out - ref).abs().max().item() < 1e-10
    # a stride-1 model's layers are unchanged by the option: the same state-dict keys and shapes
    a = MultiEncoderAE(**SMALL).state_dict()
    b = MultiEncoderAE(**SMALL, input_stride=2).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    with pytest.raises(ValueError, match="input_stride"):
        ModelConfig(input_stride=0)
