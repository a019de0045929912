"""Training: checkpoints round trip, exact resume, config files, the CLI (tiny models, CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from resp_sep.checkpoint import build_model, load_checkpoint
from resp_sep.errors import ModelError
from resp_sep.train import TrainConfig, _Interrupt, train

TINY_MODEL = {"n_encoders": 4, "channels": [8, 8, 16, 16], "hidden": 8, "kernel_size": 5}


def tiny_cfg(tmp_path, **kw):
    base = dict(simulate=3, simulate_minutes=2.5, out=str(tmp_path / "m.pt"), cache_dir=str(tmp_path / "cache"),
                epochs=2, batch_size=4, max_steps_per_epoch=3, threads=1, seed=1, model=TINY_MODEL,
                check_heart_rate=False, max_val_segments=8)
    base.update(kw)
    return TrainConfig(**base)


def _quiet(*a, **k):
    pass


def test_checkpoint_contents_and_round_trip(tmp_path):
    cfg = tiny_cfg(tmp_path)
    summary = train(cfg, log=_quiet)
    ck = load_checkpoint(summary["checkpoint"])  # weights_only=True inside
    for key in ("format_version", "model_name", "model_config", "state_dict", "resp_encoder", "train_config",
                "data_summary", "metrics", "versions", "selection", "signal", "preprocess"):
        assert key in ck, key
    assert ck["train_config"]["seed"] == 1
    assert ck["data_summary"]["train_subjects"] and ck["data_summary"]["val_subjects"]
    assert not set(ck["data_summary"]["train_subjects"]) & set(ck["data_summary"]["val_subjects"])
    assert len(ck["metrics"]["history"]) == 2
    assert 0 <= ck["resp_encoder"] < 4
    assert len(ck["selection"]["label_free"]) == 4
    # identical outputs after save -> load
    m1 = build_model(ck)
    m2 = build_model(load_checkpoint(summary["checkpoint"]))
    x = torch.rand(2, 1, 12_288)
    with torch.no_grad():
        assert torch.equal(m1(x)[0], m2(x)[0])
    # plain torch.load with weights_only works without respsep classes
    raw = torch.load(summary["checkpoint"], weights_only=True)
    assert raw["model_name"] == "MultiEncoderAE"


def test_resume_after_interrupted_epoch_matches_uninterrupted(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    train(tiny_cfg(a, epochs=3), log=_quiet)
    cfg_b = tiny_cfg(b, epochs=3)
    with pytest.raises(_Interrupt):
        train(cfg_b, log=_quiet, _stop_after_steps=5)  # dies in the middle of epoch 2
    train(cfg_b, resume=True, log=_quiet)
    wa = torch.load(a / "m.last.pt", weights_only=True)
    wb = torch.load(b / "m.last.pt", weights_only=True)
    assert wa["epoch"] == wb["epoch"] == 2
    for k in wa["state_dict"]:
        assert torch.equal(wa["state_dict"][k], wb["state_dict"][k]), k
    assert [h["train"]["total"] for h in wa["metrics"]["history"]] == \
        [h["train"]["total"] for h in wb["metrics"]["history"]]


def test_config_file_and_overrides(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('epochs = 5\nbatch_size = 8\nseed = 7\n[model]\nn_encoders = 4\nchannels = [8, 8]\nhidden = 8\n')
    cfg = TrainConfig.from_toml(toml, epochs=2)
    assert cfg.epochs == 2 and cfg.batch_size == 8 and cfg.seed == 7
    assert cfg.model_config().channels == [8, 8]
    bad = tmp_path / "bad.toml"
    bad.write_text("epoch = 3\n")
    with pytest.raises(Exception, match="unknown config keys: epoch"):
        TrainConfig.from_toml(bad)


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"a": 1}, other)
    with pytest.raises(ModelError, match="not a respsep checkpoint"):
        load_checkpoint(other)


def test_cli_train_prints_checkpoint_and_encoder(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        "simulate = 3\nsimulate_minutes = 2.5\nepochs = 1\nbatch_size = 4\nmax_steps_per_epoch = 2\n"
        "threads = 1\ncheck_heart_rate = false\nmax_val_segments = 8\n"
        "[model]\nn_encoders = 4\nchannels = [8, 8, 16, 16]\nhidden = 8\nkernel_size = 5\n")
    out = tmp_path / "cli.pt"
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    r = subprocess.run([sys.executable, "-m", "resp_sep", "train", "--config", str(toml), "--out", str(out),
                        "--cache-dir", str(tmp_path / "c"), "--json"], capture_output=True, text=True, timeout=300,
                       env={**env, "TMPDIR": str(tmpdir)})
    assert r.returncode == 0, r.stderr
    assert list(tmpdir.iterdir()) == []  # nothing left in $TMPDIR (torch's import made torchinductor_USER there)
    summary = json.loads(r.stdout)
    assert summary["checkpoint"] == str(out) and out.exists()
    assert isinstance(summary["resp_encoder"], int)
    assert summary["segments_per_s"] > 0
    r = subprocess.run([sys.executable, "-m", "resp_sep", "train", "--config", str(toml), "--out", str(out),
                        "--cache-dir", str(tmp_path / "c")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "checkpoint:" in r.stdout and "respiration encoder:" in r.stdout


def test_cli_train_bad_input_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "resp_sep", "train", str(tmp_path / "missing.edf"), "--out",
                        str(tmp_path / "x.pt"), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_split_is_by_subject_and_deterministic():
    from resp_sep.data import split_subjects, subject_id

    subj = [f"s{i}" for i in range(20)]
    a = split_subjects(subj, 0.25, seed=3)
    b = split_subjects(subj, 0.25, seed=3)
    assert a == b and len(a[1]) == 5 and not set(a[0]) & set(a[1])
    assert subject_id("/x/marsh-0083.edf", [["marsh-0018", "marsh-0083"]]) == "marsh-0018+marsh-0083"
    assert subject_id("/x/v100s.hea") == "v100s"
    tr, va = split_subjects(["marsh-0018+marsh-0083", "a", "b"], 0.0, 0, val_subjects=["marsh-0083"])
    assert va == ["marsh-0018+marsh-0083"]


def test_segment_cache_reused(tmp_path):
    from resp_sep.data import cache_recording
    from resp_sep.simulate import simulate, write_simulation

    p = write_simulation(simulate(duration_s=150, fs=250, seed=2), tmp_path / "r.edf")
    a = cache_recording(str(p), "ecg", tmp_path / "c", hop=3072, check_hr=False)
    b = cache_recording(str(p), "ecg", tmp_path / "c", hop=3072, check_hr=False)
    assert a.cache_file == b.cache_file and a.n_kept == b.n_kept > 0
    segs = a.load()
    assert segs.shape[1] == 12_288 and float(np.max(segs)) <= 1.0 and float(np.min(segs)) >= 0.0


def test_torchrun_two_processes_same_command(tmp_path):
    """The same `respsep train` command runs data-parallel under torchrun (gloo on CPU)."""
    import shutil

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        pytest.skip("torchrun not installed")
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        "simulate = 3\nsimulate_minutes = 2.5\nepochs = 1\nbatch_size = 4\nmax_steps_per_epoch = 2\n"
        "threads = 1\ncheck_heart_rate = false\nmax_val_segments = 8\n"
        "[model]\nn_encoders = 4\nchannels = [8, 8, 16, 16]\nhidden = 8\nkernel_size = 5\n")
    out = tmp_path / "ddp.pt"
    r = subprocess.run([torchrun, "--nproc_per_node=2", "-m", "resp_sep", "train", "--config", str(toml),
                        "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--json"],
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)  # exactly one JSON document: only rank 0 reports
    assert summary["checkpoint"] == str(out)
    assert load_checkpoint(out)["resp_encoder"] == summary["resp_encoder"]
