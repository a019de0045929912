"""Training tools: step-level validation, mid-epoch resume, --init, schedules, folder weights,
time budget, reconstruction references (tiny models, CPU)."""


import numpy as np
import pytest
import torch
from test_train import TINY_MODEL, _quiet, tiny_cfg

from resp_sep.errors import ModelError, RespSepError
from resp_sep.train import TrainConfig, _init_from, _Interrupt, train


def test_val_every_keeps_best_at_step_granularity(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=2, max_steps_per_epoch=3, val_every=2)
    s = train(cfg, log=_quiet)
    ck = torch.load(s["checkpoint"], weights_only=True)
    hist = ck["metrics"]["history"]
    # steps 2 and 4 by val_every, and the last step of the run (6 is both)
    assert [h["step"] for h in hist] == [2, 4, 6]
    metrics = [h["val"]["metric"] for h in hist]
    assert ck["best"]["step"] == hist[int(np.argmin(metrics))]["step"] == s["best_step"]
    v = hist[0]["val"]
    assert v["recon_refs"]["floor"] < v["recon_refs"]["segment_mean"]
    assert v["val_recon_excess"] == pytest.approx(v["val_recon"] - v["recon_refs"]["floor"])
    assert hist[-1]["cpu_s_total"] > 0 and hist[-1]["train_s_total"] > 0 and hist[0]["segments_per_s"] > 0


def test_resume_mid_epoch_matches_uninterrupted(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(tiny_cfg(a, epochs=2, max_steps_per_epoch=4, val_every=2), log=_quiet)
    cfg_b = tiny_cfg(b, epochs=2, max_steps_per_epoch=4, val_every=2)
    with pytest.raises(_Interrupt):
        train(cfg_b, log=_quiet, _stop_after_steps=3)  # last state saved after step 2, mid-epoch 1
    last = torch.load(b / "m.last.pt", weights_only=True)
    assert last["epoch"] == 0 and last["next_step"] == 2
    train(cfg_b, resume=True, log=_quiet)
    wa = torch.load(a / "m.last.pt", weights_only=True)
    wb = torch.load(b / "m.last.pt", weights_only=True)
    for k in wa["state_dict"]:
        assert torch.equal(wa["state_dict"][k], wb["state_dict"][k]), k
    assert [h["step"] for h in wa["metrics"]["history"]] == [h["step"] for h in wb["metrics"]["history"]]


def test_init_loads_weights_and_refuses_other_architectures(tmp_path):
    from resp_sep.model import MultiEncoderAE

    s = train(tiny_cfg(tmp_path / "a", epochs=1, max_steps_per_epoch=2), log=_quiet)
    m = MultiEncoderAE(**TINY_MODEL)
    _init_from(m, s["checkpoint"], torch.device("cpu"))
    ref = torch.load(s["checkpoint"], weights_only=True)["state_dict"]
    assert all(torch.equal(m.state_dict()[k], ref[k]) for k in ref)
    other = MultiEncoderAE(**{**TINY_MODEL, "channels": [8, 8, 16]})
    with pytest.raises(ModelError, match="another architecture"):
        _init_from(other, s["checkpoint"], torch.device("cpu"))
    # a run started from it records where it came from
    s2 = train(tiny_cfg(tmp_path / "b", epochs=1, max_steps_per_epoch=1, init=s["checkpoint"]), log=_quiet)
    ck2 = torch.load(s2["checkpoint"], weights_only=True)
    assert ck2["train_config"]["init"] == s["checkpoint"]
    # the starting point is validated first (step 0) and competes for the kept checkpoint
    assert [h["step"] for h in ck2["metrics"]["history"]] == [0, 1]


def test_lr_schedules():
    from resp_sep.schedules import lr_factor

    assert lr_factor(0, "cosine", 100) == pytest.approx(1.0)
    assert lr_factor(100, "cosine", 100, min_frac=0.1) == pytest.approx(0.1)
    assert lr_factor(50, "cosine", 100) == pytest.approx(0.5)
    assert [lr_factor(s, "step", 100, gamma=0.5, step_every=10) for s in (0, 9, 10, 25)] == [1, 1, 0.5, 0.25]
    peak = [lr_factor(s, "onecycle", 100, warmup_frac=0.2) for s in range(101)]
    assert int(np.argmax(peak)) == 20 and peak[20] == pytest.approx(1.0)
    assert peak[0] < 0.1 and peak[-1] < peak[0]
    with pytest.raises(RespSepError, match="unknown lr_schedule"):
        lr_factor(0, "linear", 10)


def test_schedule_drives_the_optimiser(tmp_path):
    s = train(tiny_cfg(tmp_path, epochs=2, max_steps_per_epoch=2, lr_schedule="step", lr_step_every=2,
                       lr_gamma=0.1), log=_quiet)
    lrs = [h["lr"] for h in s["history"]]
    assert lrs == pytest.approx([1e-4, 1e-5])


def test_folder_weights(tmp_path):
    from resp_sep.data import RecordingSegments, SegmentIndex

    cfg = TrainConfig(folder_weights={"mitdb-wfdb": 0.0, "marsh-edf": 2.0})
    assert cfg.weight_of("../shared/data/mitdb-wfdb/100.hea") == 0.0
    assert cfg.weight_of("/x/marsh-edf/marsh-0018.edf") == 2.0
    assert cfg.weight_of("/x/cinc2015-wfdb/v100s.hea") == 1.0
    recs = []
    for i, n in enumerate((10, 30)):
        f = tmp_path / f"{i}.npy"
        np.save(f, np.zeros((n, 12_288), np.float16))
        recs.append(RecordingSegments(str(f), str(i), str(f), np.arange(n), n, {}, "x"))
    plain = SegmentIndex(recs)
    assert plain.epoch_size() == 40 and sorted(plain.epoch_rows(np.random.default_rng(0))) == list(range(40))
    idx = SegmentIndex(recs, [3.0, 0.0])
    assert idx.epoch_size() == 30
    rows = idx.epoch_rows(np.random.default_rng(0))
    assert len(rows) == 30 and rows.max() < 10  # the weight-0 recording is never drawn


def test_folder_weight_zero_excludes_simulated_training(tmp_path):
    # every simulated recording lives in <cache>/simulated: weight 0 leaves only validation subjects
    cfg = tiny_cfg(tmp_path, simulate=3, folder_weights={"simulated": 0.0}, val_subjects=["sim-0001-0000-150s"])
    with pytest.raises(RespSepError, match="no usable segments|no training"):
        train(cfg, log=_quiet)


def test_time_budget_stops_cleanly(tmp_path):
    s = train(tiny_cfg(tmp_path, epochs=50, max_steps_per_epoch=3, time_budget_min=1e-6), log=_quiet)
    assert [h["step"] for h in s["history"]] == [1]
    ck = torch.load(tmp_path / "m.last.pt", weights_only=True)
    assert ck["next_step"] == 1 and ck["epoch"] == 0


def test_max_steps_stops_cleanly(tmp_path):
    s = train(tiny_cfg(tmp_path, epochs=50, max_steps_per_epoch=3, max_steps=4), log=_quiet)
    assert s["history"][-1]["step"] == 4
    ck = torch.load(tmp_path / "m.last.pt", weights_only=True)
    assert ck["epoch"] == 1 and ck["next_step"] == 1  # stopped after the first step of the second epoch


def test_config_value_of_the_wrong_type_is_a_usage_error(tmp_path):
    from resp_sep.errors import RespSepError

    p = tmp_path / "c.toml"
    p.write_text('inputs = ["x"]\nsignal = "ppg"\nmax_steps = "many"\n')
    with pytest.raises(RespSepError, match="max_steps.*int") as e:
        TrainConfig.from_toml(p)
    assert e.value.exit_code == 2
    p.write_text('inputs = ["x"]\nsignal = "ppg"\ntime_budget_min = 8\nmax_steps = 782\n')
    cfg = TrainConfig.from_toml(p)  # an integer where a float is expected is fine
    assert cfg.time_budget_min == 8 and cfg.max_steps == 782


def test_reconstruction_references_order():
    from resp_sep.losses import reconstruction_references

    t = np.arange(12_288) / 200.0
    pulses = (np.sin(2 * np.pi * 1.2 * t) > 0.95).astype(float)
    drift = 0.5 + 0.3 * np.sin(2 * np.pi * 0.25 * t)
    x = np.clip(0.6 * drift + 0.4 * pulses, 0, 1)[None]
    r = reconstruction_references(x, 200.0)
    assert r["floor"] < r["lowpass_20hz"] < r["lowpass_1hz"] < r["segment_mean"]


def test_mixing_loss_depth_weighting():
    from resp_sep.losses import sparse_mixing_loss
    from resp_sep.model import MultiEncoderAE

    m = MultiEncoderAE(**TINY_MODEL)
    layers = m.mixing_layers()
    with torch.no_grad():
        plain = float(sparse_mixing_loss(layers, 4))
        deep = float(sparse_mixing_loss(layers, 4, depth="inv_sq"))
        first = float(sparse_mixing_loss(layers[:1], 4))
        first_deep = float(sparse_mixing_loss(layers[:1], 4, depth="inv_sq"))
    assert first < deep < plain
    assert first_deep == pytest.approx(first)


def test_cli_bad_folder_weight_is_usage_error(run_cli_proc, tmp_path):
    code, _out, err = run_cli_proc(["train", "--simulate", "1", "--folder-weight", "mitdb", "--out",
                                   str(tmp_path / "x.pt")])
    assert code == 2 and "FOLDER=WEIGHT" in err and "Traceback" not in err


def test_lowfreq_loss_sees_drift_not_beats():
    from resp_sep.losses import lowfreq_loss

    t = torch.arange(12_288) / 200.0
    x = (0.5 + 0.2 * torch.sin(2 * torch.pi * 0.25 * t))[None, None]
    beats = 0.2 * torch.sin(2 * torch.pi * 5.0 * t)[None, None]  # averages out over 1 s
    logit = lambda p: torch.log(p / (1 - p))  # noqa: E731
    assert float(lowfreq_loss(logit(x + beats), x, 200)) < 1e-4
    assert float(lowfreq_loss(logit(torch.full_like(x, 0.5)), x, 200)) > 1e-2


def test_simulator_real_profile():
    from resp_sep.simulate import simulate

    a = simulate(60, fs=100, seed=3)
    b = simulate(60, fs=100, seed=3, profile="default")
    c = simulate(60, fs=100, seed=3, profile="real")
    assert np.array_equal(a.ecg, b.ecg) and np.array_equal(a.resp, c.resp)  # same breathing, other strengths
    assert not np.array_equal(a.ecg, c.ecg)
    assert np.array_equal(c.ecg, simulate(60, fs=100, seed=3, profile="real").ecg)
    with pytest.raises(ValueError, match="profile"):
        simulate(60, fs=100, seed=3, profile="icu")


def test_robust_scale_clips_a_spike_that_min_max_lets_dominate():
    from resp_sep.preprocess import minmax_scale, robust_bounds, robust_scale

    t = np.arange(12_288) / 200.0
    seg = np.sin(2 * np.pi * 0.25 * t)
    seg[5000:5003] = 50.0  # an electrode pop: 3 samples
    mm, rb = minmax_scale(seg), robust_scale(seg, 0.1)
    # min-max: the sine is squeezed into ~4 % of [0, 1]; robust: it spans nearly all of it
    assert np.ptp(np.delete(mm, range(5000, 5003))) < 0.05
    assert np.ptp(np.delete(rb, range(5000, 5003))) > 0.95
    assert rb.min() >= 0.0 and rb.max() <= 1.0 and rb.dtype == np.float32
    assert np.all(rb[5000:5003] == 1.0)  # the spike saturates
    # 0 % is plain min-max; flat segments give 0.5; batches keep their shape
    assert np.array_equal(robust_scale(seg, 0.0), mm)
    assert np.all(robust_scale(np.ones((2, 100)), 1.0) == 0.5)
    assert robust_scale(np.random.default_rng(0).normal(size=(3, 2, 500)), 1.0).shape == (3, 2, 500)
    lo, hi = robust_bounds(seg, 0.1)
    assert lo.shape == hi.shape == (1,) and -1.0 <= lo[0] < -0.99 and 0.99 < hi[0] <= 1.0
    with pytest.raises(ValueError):
        robust_bounds(seg, 50.0)


def test_robust_scaling_trains_caches_separately_and_is_applied_at_extraction(tmp_path):
    from resp_sep.separate import Separator, _scaled_batch

    s = train(tiny_cfg(tmp_path, epochs=1, max_steps_per_epoch=1, clip_percentile=0.5), log=_quiet)
    ck = torch.load(s["checkpoint"], weights_only=True)
    assert ck["preprocess"]["scaling"] == "robust" and ck["preprocess"]["clip_percentile"] == 0.5
    # the cache holds robust-scaled segments, under other keys than plain min-max ones
    robust_files = set(p.name for p in (tmp_path / "cache").glob("*.npy"))
    train(tiny_cfg(tmp_path / "mm", epochs=1, max_steps_per_epoch=1, cache_dir=str(tmp_path / "cache")), log=_quiet)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2 * len(robust_files)
    from resp_sep.errors import UsageError
    from resp_sep.options import check_train

    with pytest.raises(UsageError, match="clip_percentile"):
        check_train(tiny_cfg(tmp_path, clip_percentile=60.0))
    sep = Separator.from_checkpoint(s["checkpoint"], device="cpu")
    assert sep.clip_pct == 0.5
    raw = np.random.default_rng(1).normal(size=(2, 12_288)).astype(np.float32)
    raw[0, 100] = 80.0
    x, span = _scaled_batch(raw, torch.device("cpu"), 0.5)
    from resp_sep.preprocess import robust_scale

    assert np.allclose(x[:, 0].numpy(), robust_scale(raw, 0.5), atol=1e-6)
    assert np.all(span[:, 0] < 10)  # the spike did not set the range
    y = sep.respiration_segments(raw)
    assert y.shape == raw.shape and np.all(np.isfinite(y))


def test_bn_recalibration_makes_eval_independent_of_the_last_batches():
    from resp_sep.model import MultiEncoderAE
    from resp_sep.train import recalibrate_batchnorm

    torch.manual_seed(0)
    m = MultiEncoderAE(**TINY_MODEL)
    rng = np.random.default_rng(0)
    calib = [rng.random((4, 12_288)).astype(np.float32) for _ in range(3)]
    recalibrate_batchnorm(m, calib, torch.device("cpu"))
    bn = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm1d)]
    first = [b.running_mean.clone() for b in bn]
    assert all(b.momentum == 0.1 for b in bn) and not any(torch.all(f == 0) for f in first)
    # the running statistics drift with whatever training batches come next ...
    m.train()
    with torch.no_grad():
        m.encode(torch.full((4, 1, 12_288), 0.9))
    assert not torch.allclose(bn[0].running_mean, first[0])
    # ... and recalibration on the same batches restores exactly the same statistics
    recalibrate_batchnorm(m, calib, torch.device("cpu"))
    assert all(torch.allclose(b.running_mean, f, atol=1e-6) for b, f in zip(bn, first))
    # the first layer's statistics are the plain mean over all calibration batches
    with torch.no_grad():
        h = m.encoder[:2](torch.from_numpy(np.concatenate(calib))[:, None].repeat(1, 4, 1))
    assert torch.allclose(bn[0].running_mean, h.mean(dim=(0, 2)), atol=1e-5)


def test_bn_recalibrate_option_in_training(tmp_path):
    s = train(tiny_cfg(tmp_path, epochs=1, max_steps_per_epoch=2, val_every=1, bn_recalibrate=2), log=_quiet)
    ck = torch.load(s["checkpoint"], weights_only=True)
    assert ck["train_config"]["bn_recalibrate"] == 2
    assert len(ck["metrics"]["history"]) == 2


def test_time_budget_counts_resumed_sessions(tmp_path):
    """A run cut by a lost session ends on --resume where it would have: the budget is cumulative."""
    cfg = tiny_cfg(tmp_path, epochs=2, max_steps_per_epoch=3, val_every=1, time_budget_min=1.0)
    with pytest.raises(_Interrupt):
        train(cfg, log=_quiet, _stop_after_steps=2)
    last_path = tmp_path / "m.last.pt"
    last = torch.load(last_path, weights_only=True)
    # as if the lost session had trained for 61 minutes
    last["metrics"]["history"][-1]["train_s_total"] = 61 * 60.0
    torch.save(last, last_path)
    s = train(cfg, resume=True, log=_quiet)
    assert s["history"][-1]["step"] == last["metrics"]["history"][-1]["step"] + 1
