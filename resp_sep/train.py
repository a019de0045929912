"""Self-supervised training of the separator (``respsep train``).

No respiration reference is needed to train: every recording carrying the chosen signal serves.
After each epoch the model is scored on held-out validation *subjects*: reconstruction loss,
the label-free respiration score of every encoder (:mod:`resp_sep.select`) and, where the
validation recordings carry a thoracic/nasal reference, each encoder's breaths/min MAE. The
checkpoint kept as the result is the epoch with the best separation metric, never the one with
the lowest reconstruction loss: separation emerges and can fade while reconstruction improves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from resp_sep.checkpoint import load_checkpoint, save_checkpoint
from resp_sep.data import SegmentIndex, cache_recording, split_subjects, subject_id
from resp_sep.errors import ModelError, RespSepError, UsageError
from resp_sep.losses import LossWeights, total_loss
from resp_sep.model import ModelConfig, MultiEncoderAE
from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN
from resp_sep.schedules import build_scheduler


@dataclass
class TrainConfig:
    """Every option of ``respsep train`` (also readable from a TOML file with the same keys).

    Data
    ----
    inputs : recordings, folders or globs. signal : "ecg" | "ppg". channel : {role: label}.
    hop_s : step between training segments in s (overlap multiplies small corpora).
    val_fraction, val_subjects : subject-level validation split. exclude : subjects never used
    (held-out test subjects). same_subject : groups of record names from one person.
    val_ref : reference role for validation MAE ("thor", "nasal" or "none").
    simulate : number of simulated recordings added to training and validation (0 = none),
    simulate_minutes : their length, simulate_profile : "default" or "real" (modulation strengths
    calibrated to MARSH, :data:`resp_sep.simulate.REAL_PROFILE`). check_heart_rate : run the heart-rate quality filter.

    folder_weights : {folder name or path fragment: weight}: expected appearances per epoch of
    each segment of the recordings in that folder (default 1); 0 excludes them (never read).

    Optimisation
    ------------
    epochs, batch_size, lr, weight_decay, grad_clip, max_steps_per_epoch (0 = full epochs),
    flip_prob (probability of inverting a segment's polarity, an augmentation), seed, device
    ("auto" | "cpu" | "cuda"), threads (CPU threads, 0 = torch default), bf16 (bf16 autocast on CUDA;
    off by default: the authors trained in fp32, and bf16 is an opt-in speed-up, docs/method.md).
    lr_schedule : "constant" | "cosine" | "step" | "onecycle" over ``epochs`` x steps per epoch
    (:mod:`resp_sep.schedules`), with lr_gamma / lr_step_every (step), lr_warmup_frac (onecycle)
    and lr_min_frac (cosine end, onecycle start).
    init : checkpoint whose weights start the run (fine-tuning / curriculum; fresh optimiser).
    val_every : validate every N optimiser steps (0 = after every epoch); the kept checkpoint is
    the validation point with the best metric, at step granularity.
    time_budget_min : stop cleanly (validate, save) after this many minutes of training, counted over
        every resumed session (0 = no limit).
    max_steps : stop cleanly (validate, save) after this many optimiser steps of the whole run (0 =
    no limit): the machine-independent way to repeat a run that a time budget stopped.
    clip_percentile : robust scaling: percent of each segment's samples clipped at either end
    before min-max scaling (0 = plain min-max; recorded in the checkpoint, applied at extraction).
    bn_recalibrate : before every validation, recompute the encoders' BatchNorm running statistics
    as the plain average over this many fixed training batches (0 = keep the exponential moving
    average of the last training batches, which makes eval-mode numbers depend on those batches).

    The model's pooling stages (the latent's time resolution, 12,288 / 2**stages steps) are the
    length of ``model.channels``.
    """

    inputs: list[str] = field(default_factory=list)
    signal: str = "ecg"
    out: str = "respsep-model.pt"
    channel: dict[str, str] = field(default_factory=dict)
    hop_s: float = 15.36
    val_fraction: float = 0.2
    val_subjects: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    same_subject: list[list[str]] = field(default_factory=list)
    val_ref: str = "thor"
    max_val_segments: int = 256
    simulate: int = 0
    simulate_minutes: float = 10.0
    simulate_profile: str = "default"
    check_heart_rate: bool = True
    cache_dir: str = ""
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-6
    grad_clip: float = 0.5
    lr_schedule: str = "constant"
    lr_gamma: float = 0.5
    lr_step_every: int = 1000
    lr_warmup_frac: float = 0.1
    lr_min_frac: float = 0.0
    max_steps_per_epoch: int = 0
    flip_prob: float = 0.0
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    bf16: bool = False
    folder_weights: dict[str, float] = field(default_factory=dict)
    init: str = ""
    val_every: int = 0
    time_budget_min: float = 0.0
    max_steps: int = 0
    clip_percentile: float = 0.0
    bn_recalibrate: int = 0
    model: dict = field(default_factory=dict)
    loss: dict = field(default_factory=dict)

    def model_config(self) -> ModelConfig:
        return ModelConfig(**self.model)

    def loss_weights(self) -> LossWeights:
        return LossWeights(**self.loss)

    def weight_of(self, path: str) -> float:
        """Sampling weight of a recording: the first ``folder_weights`` key naming one of its
        parent folders (or, failing that, contained in its path); 1 when none matches."""
        parts = Path(path).parts[:-1]
        for key, w in self.folder_weights.items():
            if key in parts:
                return float(w)
        for key, w in self.folder_weights.items():
            if key in str(path):
                return float(w)
        return 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model_config().to_dict()
        d["loss"] = self.loss_weights().to_dict()
        return d

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides) -> "TrainConfig":
        """Read a TOML config; keyword ``overrides`` (command-line options given) take precedence."""
        import tomllib

        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as e:
            raise RespSepError(f"cannot read config: {e.strerror}", str(path), exit_code=2) from None
        except tomllib.TOMLDecodeError as e:
            raise RespSepError(f"invalid TOML: {e}", str(path), exit_code=2) from None
        data = data.get("train", data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RespSepError(f"unknown config keys: {', '.join(unknown)}", str(path), exit_code=2)
        for key, value in data.items():  # a wrong type would otherwise fail minutes later, mid-training
            want = _scalar_type(cls.__dataclass_fields__[key].default)
            if want is not None and not _is(value, want):
                raise RespSepError(f"config key {key!r} must be {want.__name__}, got {value!r}", str(path),
                                   exit_code=2)
        data.update(overrides)
        return cls(**data)


def _scalar_type(default) -> type | None:
    """The type a config key with this default must have (None: not a plain scalar, not checked here)."""
    for t in (bool, int, float, str):
        if type(default) is t:
            return t
    return None


def _is(value, want: type) -> bool:
    if want is float:  # TOML writes 8 for 8.0
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, want)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RespSepError("--device cuda requested but no CUDA device is available", exit_code=2)
    return torch.device(name)


# ---------------------------------------------------------------------------------------- data


@dataclass
class ValidationSet:
    """Non-overlapping validation segments of held-out subjects, with references when present."""

    x: np.ndarray  # (n, L) float32, min-max scaled
    ref: np.ndarray | None  # (n, L_ref) reference segments at ref_fs
    ref_fs: float
    ref_rates: np.ndarray | None
    files: list[str]
    recon_refs: dict | None = None  # reconstruction BCE floor and references (losses.reconstruction_references)


def _simulated_inputs(cfg: TrainConfig, cache_dir: Path, log: Callable) -> list[str]:
    from resp_sep.simulate import simulate, write_simulation

    folder = cache_dir / "simulated"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(cfg.simulate):
        tag = "" if cfg.simulate_profile == "default" else f"-{cfg.simulate_profile}"
        p = folder / f"sim-{cfg.seed:04d}-{i:04d}-{int(cfg.simulate_minutes * 60)}s{tag}.edf"
        if not p.exists():
            sim = simulate(duration_s=cfg.simulate_minutes * 60, fs=256, seed=cfg.seed * 100_003 + i,
                           profile=cfg.simulate_profile)
            write_simulation(sim, p)
        paths.append(str(p))
    log(f"simulated recordings: {len(paths)} x {cfg.simulate_minutes:g} min in {folder}")
    return paths


def _reference_segments(path: str, role: str, overrides: dict, starts: np.ndarray, ref_fs: float):
    from resp_sep.preprocess import load_signal

    sig = load_signal(path, role, overrides, fs_out=ref_fs, min_fs=1.0)
    n = int(round(SEGMENT_LEN / MODEL_FS * ref_fs))
    out = []
    for s in starts:
        a = int(round(s / MODEL_FS * ref_fs))
        seg = sig.x[a:a + n]
        if len(seg) < n:
            seg = np.pad(seg, (0, n - len(seg)), mode="edge")
        out.append(seg)
    return np.asarray(out)


def prepare_data(cfg: TrainConfig, log: Callable = print) -> tuple[SegmentIndex, ValidationSet | None, dict]:
    """Cache segments, split by subject and build the validation set.

    Returns
    -------
    (train index, validation set or None, data summary dict)
    """
    from resp_sep.io import find_recordings

    cache_dir = cache_path(cfg)
    paths = find_recordings(cfg.inputs) if cfg.inputs else []
    if cfg.simulate:
        paths += _simulated_inputs(cfg, cache_dir, log)
    if not paths:
        raise RespSepError("no recordings given (pass files, folders or globs, or --simulate N)", exit_code=2)
    excluded = {e for e in cfg.exclude}
    hop = max(1, int(round(cfg.hop_s * MODEL_FS)))
    train_recs, failed, skipped, weighted_out = [], [], [], []
    val_named = set(cfg.val_subjects)
    for p in paths:
        subj = subject_id(p, cfg.same_subject)
        if subj in excluded or any(part in excluded for part in subj.split("+")):
            skipped.append(p)
            continue
        named_val = subj in val_named or any(part in val_named for part in subj.split("+"))
        if cfg.weight_of(p) <= 0 and not named_val:  # weight 0: not trained on, never read
            weighted_out.append(p)
            continue
        try:
            r = cache_recording(p, cfg.signal, cache_dir, hop, cfg.channel, cfg.same_subject, cfg.check_heart_rate,
                                cfg.clip_percentile)
        except RespSepError as e:
            failed.append({"file": p, "error": e.problem})
            log(f"[yellow]skipped[/] {e}")
            continue
        if r.n_kept:
            train_recs.append(r)
    if not train_recs:
        raise RespSepError("no usable segments in any recording", exit_code=3)
    tr_subj, va_subj = split_subjects([r.subject for r in train_recs], cfg.val_fraction, cfg.seed,
                                      cfg.val_subjects)
    va_set = set(va_subj)
    train = [r for r in train_recs if r.subject not in va_set]
    val_recs = [r for r in train_recs if r.subject in va_set]
    if not train:
        raise RespSepError("no training segments left after the validation split and folder weights", exit_code=3)
    val = _validation_set(cfg, val_recs, cache_dir, log) if val_recs else None
    index = SegmentIndex(train, [cfg.weight_of(r.path) for r in train] if cfg.folder_weights else None)
    summary = {
        "signal": cfg.signal,
        "hop_s": hop / MODEL_FS,
        "segment_len": SEGMENT_LEN,
        "fs_hz": MODEL_FS,
        "train_files": [r.path for r in train],
        "val_files": [r.path for r in val_recs],
        "excluded_files": skipped,
        "weight_zero_files": weighted_out,
        "folder_weights": dict(cfg.folder_weights),
        "failed_files": failed,
        "train_subjects": tr_subj,
        "val_subjects": va_subj,
        "excluded_subjects": sorted(excluded),
        "train_segments": len(index),
        "segments_per_epoch": index.epoch_size(),
        "val_segments": 0 if val is None else int(len(val.x)),
        "val_with_reference": 0 if val is None or val.ref is None else int(np.isfinite(val.ref_rates).sum()),
        "dropped_segments": _sum_dropped(train_recs),
        "hours_train": round(sum(r.n_total for r in train) * hop / MODEL_FS / 3600, 3),
    }
    return index, val, summary


def _sum_dropped(recs) -> dict:
    tot: dict[str, int] = {}
    for r in recs:
        for k, v in r.dropped.items():
            tot[k] = tot.get(k, 0) + int(v)
    return tot


def _validation_set(cfg: TrainConfig, recs, cache_dir: Path, log: Callable) -> ValidationSet:
    from resp_sep.select import SCORE_FS, segment_rates

    xs, refs, files = [], [], []
    ref_fs = SCORE_FS * 2.5  # 25 Hz: plenty for breathing, cheap to score
    for r in recs:
        try:
            vr = cache_recording(r.path, cfg.signal, cache_dir, SEGMENT_LEN, cfg.channel, cfg.same_subject,
                                 cfg.check_heart_rate, cfg.clip_percentile)
        except RespSepError:
            continue
        if not vr.n_kept:
            continue
        x = np.asarray(vr.load(mmap=False), dtype=np.float32)
        ref = None
        if cfg.val_ref and cfg.val_ref != "none":
            try:
                ref = _reference_segments(vr.path, cfg.val_ref, cfg.channel, vr.starts, ref_fs)
            except RespSepError:
                ref = None
        n_ref = int(ref_fs * SEGMENT_LEN / MODEL_FS)
        xs.append(x)
        refs.append(ref if ref is not None else np.full((len(x), n_ref), np.nan))
        files.append(vr.path)
    if not xs:
        return None
    x = np.concatenate(xs)
    ref = np.concatenate(refs)
    if len(x) > cfg.max_val_segments:  # evenly spread subset, deterministic
        sel = np.linspace(0, len(x) - 1, cfg.max_val_segments).round().astype(int)
        x, ref = x[sel], ref[sel]
    from resp_sep.losses import reconstruction_references

    recon_refs = reconstruction_references(x, MODEL_FS)
    log("validation reconstruction BCE references (nats): " +
        ", ".join(f"{k} {v:.4f}" for k, v in recon_refs.items()))
    has_ref = np.isfinite(ref).all(axis=1)
    if not has_ref.any():
        return ValidationSet(x, None, ref_fs, None, files, recon_refs)
    rates = np.full(len(x), np.nan)
    rates[has_ref] = segment_rates(ref[has_ref], ref_fs)
    log(f"validation: {len(x)} segments, {int(np.isfinite(rates).sum())} with a scored {cfg.val_ref} reference")
    return ValidationSet(x, np.where(has_ref[:, None], ref, 0.0), ref_fs, rates, files, recon_refs)


# ----------------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(model: MultiEncoderAE, val: ValidationSet, device: torch.device, batch: int = 32) -> dict:
    """Separation metrics on the validation set (see module docstring)."""
    from resp_sep.losses import reconstruction_loss
    from resp_sep.select import choose_encoder, label_free_scores, reference_scores, segment_rates

    model.eval()
    n_enc = model.config.n_encoders
    outs = np.empty((len(val.x), n_enc, SEGMENT_LEN), dtype=np.float32)
    recon = []
    for a in range(0, len(val.x), batch):
        xb = torch.from_numpy(val.x[a:a + batch])[:, None].to(device)
        z = model.encode(xb)
        recon.append(float(reconstruction_loss(model.decode(z), xb)) * len(xb))
        for k in range(n_enc):
            outs[a:a + len(xb), k] = torch.sigmoid(model.decode(model.mask(z, k)))[:, 0].float().cpu().numpy()
    model.train()
    rates = [segment_rates(outs[:, k], MODEL_FS) for k in range(n_enc)]
    lf = label_free_scores(outs, MODEL_FS, rates=rates)
    chosen = choose_encoder(lf)
    res = {"val_recon": sum(recon) / len(val.x), "label_free": lf, "resp_encoder": chosen,
           "score": lf[chosen]["score"]}
    if val.recon_refs:
        res["recon_refs"] = val.recon_refs
        res["val_recon_excess"] = res["val_recon"] - val.recon_refs["floor"]
    if val.ref is not None:
        rs = reference_scores(outs, MODEL_FS, val.ref, val.ref_fs, val.ref_rates, rates=rates)
        res["reference"] = rs
        res["mae_bpm"] = rs[chosen]["mae_filled_bpm"]
        res["mae_scored_bpm"] = rs[chosen]["mae_bpm"]
        res["coverage"] = rs[chosen]["coverage"]
        res["abs_r"] = rs[chosen]["abs_r"]
        maes = [r["mae_filled_bpm"] if np.isfinite(r["mae_filled_bpm"]) else np.inf for r in rs]
        k_best = int(np.argmin(maes))
        res["best_encoder"] = k_best
        res["best_encoder_mae_bpm"] = float(maes[k_best]) if np.isfinite(maes[k_best]) else float("nan")
        res["best_encoder_abs_r"] = rs[k_best]["abs_r"]
        # the reference rate itself scored against a constant guess: a floor to beat
        rr = val.ref_rates[np.isfinite(val.ref_rates)]
        res["constant_guess_mae_bpm"] = float(np.mean(np.abs(rr - np.median(rr)))) if rr.size else float("nan")
    # lower is better: MAE when a reference exists (with the label-free choice), else -score
    m = res.get("mae_bpm", float("nan"))
    res["metric"] = float(m) if np.isfinite(m) else -float(res["score"])
    res["metric_name"] = "mae_bpm" if np.isfinite(m) else "-label_free_score"
    return res


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, batches: list[np.ndarray], device: torch.device) -> None:
    """Recompute every BatchNorm's running statistics as the plain average over ``batches``.

    The training-time running statistics are an exponential average dominated by the last few
    batches (momentum 0.1, batch 16), so the eval-mode model -- validation, the kept checkpoint,
    extraction -- changes with whichever batches came last (docs/experiments.md, (d)). Averaging
    over a fixed set of batches removes that noise; the weights are untouched.

    Parameters
    ----------
    model : MultiEncoderAE
    batches : list of ndarray, each shape (b, L)
        Scaled training segments.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or not batches:
        return
    momenta = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts the same
    model.train()
    for xb in batches:
        model.encode(torch.from_numpy(np.asarray(xb, dtype=np.float32))[:, None].to(device))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was_training)


def _calibration_batches(index: SegmentIndex, n_batches: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """``n_batches`` fixed batches of training segments (the same at every validation and on resume)."""
    if n_batches <= 0 or len(index) == 0:
        return []
    rng = np.random.default_rng([seed, 7919])
    n = min(len(index), n_batches * batch_size)
    rows = rng.choice(len(index), size=n, replace=False)
    return [index.batch(rows[a:a + batch_size]) for a in range(0, n, batch_size)]


# ------------------------------------------------------------------------------------- training


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "python": repr(random.getstate())}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _last_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".last.pt")


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


class _Interrupt(Exception):
    """Raised by the test hook ``_stop_after_steps`` to simulate a crash mid-epoch."""


def train(cfg: TrainConfig, *, resume: bool | str = False, log: Callable = print,
          progress: Callable | None = None, _stop_after_steps: int | None = None) -> dict:
    """Train a separator and write checkpoints.

    Parameters
    ----------
    cfg : TrainConfig
    resume : bool or str
        Continue from ``<out>.last.pt`` (True) or from the given checkpoint path: model,
        optimiser, scheduler, epoch, RNG state and history are restored exactly.
    log : callable
        Receives human-readable lines (rich markup allowed).
    progress : callable, optional
        ``progress(event, **info)`` with events ``start`` (total steps), ``step`` (loss, epoch),
        ``epoch`` (validation result); drives the CLI's progress bar.

    Returns
    -------
    dict
        Summary: paths, chosen encoder, best epoch and metrics, throughput (segments/s).
    """
    rank, world = _dist_info()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    _seed_everything(cfg.seed)
    quiet_log = log if rank == 0 else (lambda *a, **k: None)

    index, val, data_summary = prepare_data(cfg, quiet_log)
    dropped = ", ".join(f"{k} {v}" for k, v in data_summary["dropped_segments"].items()) or "none"
    quiet_log(f"data: {data_summary['train_segments']} training segments from {len(data_summary['train_files'])} "
              f"files ({data_summary['hours_train']:.1f} h; dropped by quality control: {dropped}); "
              f"{data_summary['val_segments']} validation segments from {len(data_summary['val_files'])} files; "
              f"{len(data_summary['excluded_files'])} files held out, {len(data_summary['failed_files'])} unusable")
    model = MultiEncoderAE(cfg.model_config()).to(device)
    weights = cfg.loss_weights()
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    steps_per_epoch = math.ceil(index.epoch_size() / (cfg.batch_size * world))
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    sched = build_scheduler(opt, cfg.lr_schedule, cfg.epochs * steps_per_epoch, gamma=cfg.lr_gamma,
                            step_every=cfg.lr_step_every, warmup_frac=cfg.lr_warmup_frac, min_frac=cfg.lr_min_frac)

    history: list[dict] = []
    best = {"metric": float("inf"), "epoch": -1, "step": -1}
    start_epoch, start_step = 0, 0
    if resume:
        last = check_resume(cfg, resume)
        ck = load_checkpoint(last, map_location=device)
        try:
            model.load_state_dict(ck["state_dict"])
        except RuntimeError:
            raise ModelError("cannot resume: its weights do not match this run's model settings", str(last)) from None
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"])
        nxt = ck.get("next_step")
        if nxt is None or int(nxt) >= steps_per_epoch:
            start_epoch = int(ck["epoch"]) + 1
        else:
            start_epoch, start_step = int(ck["epoch"]), int(nxt)
        history = list(ck["metrics"]["history"])
        best = {"step": -1, **dict(ck["best"])}
        if start_epoch >= cfg.epochs:
            raise UsageError(f"{last}: the run already finished ({cfg.epochs} epochs); raise --epochs to train on")
        quiet_log(f"resumed from {last} at epoch {start_epoch + 1}, step {start_epoch * steps_per_epoch + start_step}")
    elif cfg.init:
        _init_from(model, cfg.init, device)
        quiet_log(f"weights initialised from {cfg.init}")

    use_bf16 = cfg.bf16 and device.type == "cuda"
    calib = _calibration_batches(index, cfg.bn_recalibrate, cfg.batch_size, cfg.seed) if val is not None else []

    def _validate() -> dict:
        if calib:
            recalibrate_batchnorm(model, calib, device)
        return validate(model, val, device)

    total_steps = (cfg.epochs - start_epoch) * steps_per_epoch - start_step
    if progress and rank == 0:
        progress("start", total=total_steps, epochs=cfg.epochs, start_epoch=start_epoch)
    seen, t_train, step_here = 0, 0.0, 0
    # cumulative over resumed sessions: what an experiment cost in all
    prev = history[-1] if history else {}
    wall0, cpu0 = float(prev.get("train_s_total", 0.0)), float(prev.get("cpu_s_total", 0.0))
    t_run, c_run = time.perf_counter(), time.process_time()
    win = {"parts": {}, "n": 0, "t": 0.0, "segs": 0}
    budget_s = cfg.time_budget_min * 60.0
    if cfg.init and not resume and val is not None and rank == 0:
        # the starting point is a candidate too: fine-tuning must beat it to be kept
        entry = {"epoch": 0, "step": 0, "train": {}, "seconds": 0.0, "segments_per_s": 0.0,
                 "lr": float(sched.get_last_lr()[0]), "val": _validate(),
                 "train_s_total": 0.0, "cpu_s_total": time.process_time() - c_run}
        history.append(entry)
        best = {"metric": entry["val"]["metric"], "epoch": 0, "step": 0}
        save_checkpoint(_result_ckpt(model, cfg, data_summary, history, best, entry), cfg.out)
        if progress:
            progress("epoch", entry=entry, improved=True)
    model.train()
    stop = False
    for epoch in range(start_epoch, cfg.epochs):
        # The batch order and augmentation depend only on (seed, epoch): a resumed run replays
        # exactly the batches the uninterrupted run would have seen, even from mid-epoch.
        rng = np.random.default_rng([cfg.seed, epoch])
        perm = index.epoch_rows(rng)
        flips = rng.random(len(index)) < cfg.flip_prob
        first = start_step if epoch == start_epoch else 0
        for s in range(first, steps_per_epoch):
            t0 = time.perf_counter()
            a = (s * world + rank) * cfg.batch_size
            if world > 1:
                # every rank must take part in every gradient all-reduce: wrap around instead of
                # leaving a rank without a batch at the end of an epoch
                rows = np.take(perm, np.arange(a, a + cfg.batch_size), mode="wrap")
            else:
                rows = perm[a:a + cfg.batch_size]
            if len(rows) == 0:
                break
            xb = index.batch(rows)
            f = flips[rows]
            if f.any():
                xb[f] = 1.0 - xb[f]
            x = torch.from_numpy(xb)[:, None].to(device, non_blocking=True)
            parts = training_step(model, opt, x, weights, cfg.grad_clip, bf16=use_bf16,
                                  reduce_grads=_all_reduce_mean if world > 1 else None)
            sched.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            t_train += dt
            seen += len(rows) * world
            step_here += 1
            win["n"] += 1
            win["t"] += dt
            win["segs"] += len(rows) * world
            for k, v in parts.items():
                win["parts"][k] = win["parts"].get(k, 0.0) + v
            if progress and rank == 0:
                progress("step", loss=parts["total"], recon=parts["recon"], epoch=epoch + 1)
            if _stop_after_steps is not None and step_here >= _stop_after_steps:
                raise _Interrupt(f"stopped after {step_here} steps")
            gstep = epoch * steps_per_epoch + s + 1  # optimiser steps done in the whole run
            end_of_epoch = s == steps_per_epoch - 1
            # the budget counts every resumed session, so a run cut by a lost session ends where it would have
            over = (budget_s > 0 and _agree(wall0 + time.perf_counter() - t_run >= budget_s, world)) or (
                0 < cfg.max_steps <= gstep)
            do_val = (over or (cfg.val_every > 0 and gstep % cfg.val_every == 0)
                      or (end_of_epoch and (cfg.val_every <= 0 or epoch == cfg.epochs - 1)))
            if (do_val or end_of_epoch) and rank == 0:
                entry = None
                if do_val:
                    entry = {"epoch": epoch + 1, "step": gstep,
                             "train": {k: v / max(1, win["n"]) for k, v in win["parts"].items()},
                             "seconds": win["t"], "segments_per_s": win["segs"] / win["t"] if win["t"] else 0.0,
                             "lr": float(sched.get_last_lr()[0])}
                    win = {"parts": {}, "n": 0, "t": 0.0, "segs": 0}
                    if val is not None:
                        tv = time.perf_counter()
                        entry["val"] = _validate()
                        entry["val_s"] = time.perf_counter() - tv
                    entry["train_s_total"] = wall0 + time.perf_counter() - t_run
                    entry["cpu_s_total"] = cpu0 + time.process_time() - c_run
                    history.append(entry)
                improved = entry is not None and val is not None and entry["val"]["metric"] < best["metric"]
                ref_entry = entry if entry is not None else (history[-1] if history else {"epoch": epoch + 1})
                if entry is not None and (val is None or improved):
                    best = {"metric": entry["val"]["metric"] if val is not None else float("nan"),
                            "epoch": epoch + 1, "step": gstep}
                    save_checkpoint(_result_ckpt(model, cfg, data_summary, history, best, entry), cfg.out)
                last = _result_ckpt(model, cfg, data_summary, history, best, ref_entry)
                last.update({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch,
                             "next_step": s + 1, "steps_per_epoch": steps_per_epoch, "rng": _rng_state()})
                save_checkpoint(last, _last_path(cfg.out))
                if progress and entry is not None:
                    progress("epoch", entry=entry, improved=improved or val is None)
            if over:
                why = (f"{cfg.max_steps} steps" if 0 < cfg.max_steps <= gstep
                       else f"time budget of {cfg.time_budget_min:g} min")
                quiet_log(f"{why} reached at step {gstep}")
                stop = True
                break
        if stop:
            break
    if world > 1:
        torch.distributed.barrier()
    if rank != 0:
        return {}
    final = load_checkpoint(cfg.out)
    # the kept checkpoint records the whole history, not only the epochs up to its own
    final["metrics"]["history"] = history
    final.pop("_path", None)
    for k in ("format_version", "model_name", "versions", "created"):
        final.pop(k, None)
    save_checkpoint(final, cfg.out)
    return {
        "checkpoint": str(Path(cfg.out)),
        "last_checkpoint": str(_last_path(cfg.out)),
        "resp_encoder": int(final["resp_encoder"]),
        "best_epoch": best["epoch"],
        "best_step": best.get("step", -1),
        "best_metric": best["metric"],
        "metric_name": history[-1]["val"]["metric_name"] if history and "val" in history[-1] else None,
        "train_segments": data_summary["train_segments"],
        "val_segments": data_summary["val_segments"],
        "segments_per_s": seen / t_train if t_train else None,
        "device": str(device),
        "epochs": cfg.epochs,
        "history": history,
        "data": data_summary,
    }


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam, as the authors train (``torch.optim.Adam(lr, weight_decay)``)."""
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def training_step(model: MultiEncoderAE, opt: torch.optim.Optimizer, x: torch.Tensor, weights: LossWeights,
                  grad_clip: float = 0.0, *, bf16: bool = False,
                  reduce_grads: Callable | None = None) -> dict[str, float]:
    """One optimiser step on one batch: all loss terms, backward, gradient-norm clip, update.

    The one step every training run takes (``respsep train`` and ``benchmarks/toy_bss.py``).

    Parameters
    ----------
    x : Tensor, shape (batch, 1, L)
        Min-max scaled segments (any ``L`` divisible by the model's downsampling factor).
    grad_clip : float
        Clip the gradient's global L2 norm to this (0 = off).
    bf16 : bool
        bf16 autocast (CUDA only in practice).
    reduce_grads : callable, optional
        Called on the model after backward (multi-process training averages gradients here).

    Returns
    -------
    dict
        The loss terms (:func:`resp_sep.losses.total_loss`).
    """
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss, parts = total_loss(model, x, weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if reduce_grads is not None:
        reduce_grads(model)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return parts


def _all_reduce_mean(model: torch.nn.Module) -> None:
    world = torch.distributed.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad /= world


def _agree(flag: bool, world: int) -> bool:
    """True on every rank when any rank says so (ranks must stop at the same step)."""
    if world <= 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0])
    torch.distributed.all_reduce(t)
    return bool(t.item() > 0)


def _init_from(model: MultiEncoderAE, path: str, device: torch.device) -> None:
    """Load a checkpoint's weights into ``model`` (same architecture required)."""
    ck = load_checkpoint(path, map_location=device)
    init_only = ("decoder_init", "block_diagonal_init")  # how weights start, overwritten here anyway
    theirs = {k: v for k, v in ModelConfig(**ck["model_config"]).to_dict().items() if k not in init_only}
    ours = {k: v for k, v in model.config.to_dict().items() if k not in init_only}
    if theirs != ours:
        diff = ", ".join(f"{k}: {theirs.get(k)} vs {ours.get(k)}" for k in ours if theirs.get(k) != ours.get(k))
        raise ModelError(f"--init checkpoint has another architecture ({diff})", str(path))
    model.load_state_dict(ck["state_dict"])


def cache_path(cfg: TrainConfig) -> Path:
    """The segment cache folder of a run: ``cfg.cache_dir`` or ``OUT.cache`` beside the checkpoint."""
    return Path(cfg.cache_dir or Path(cfg.out).with_suffix("").as_posix() + ".cache")


def check_resume(cfg: TrainConfig, resume: bool | str) -> Path:
    """The checkpoint a ``--resume`` run continues from, checked before any work.

    Raises
    ------
    ModelError
        Missing, unreadable or not a resumable ("last") checkpoint (exit 5).
    UsageError
        The run it belongs to has already trained ``cfg.epochs`` epochs (exit 2).
    """
    last = Path(resume) if isinstance(resume, str) else _last_path(cfg.out)
    if not last.exists():
        raise ModelError("cannot resume: no such checkpoint (a run writes OUT.last.pt after its first epoch)",
                         str(last))
    ck = load_checkpoint(last)
    missing = [k for k in ("optimizer", "scheduler", "epoch", "rng", "best", "metrics") if k not in ck]
    if missing:
        raise ModelError(f"cannot resume: not a resumable checkpoint (lacks {', '.join(missing)}); "
                         "resume from OUT.last.pt", str(last))
    epoch, nxt, per = int(ck["epoch"]), ck.get("next_step"), ck.get("steps_per_epoch")
    epoch_done = nxt is None or (per is not None and int(nxt) >= int(per))
    done = epoch + 1 if epoch_done else epoch
    if done >= cfg.epochs:
        raise UsageError(f"{last}: the run already finished ({done} of {cfg.epochs} epochs); "
                         f"raise --epochs above {done} to train on")
    return last


def _result_ckpt(model, cfg: TrainConfig, data_summary: dict, history: list, best: dict, entry: dict) -> dict:
    val = entry.get("val")
    selection = {"method": "band_concentration_x_rate_coverage", "band_hz": [0.1, 0.7]}
    if val is not None:
        selection.update({"label_free": val["label_free"], "reference": val.get("reference"),
                          "reference_role": cfg.val_ref, "epoch": entry["epoch"], "step": entry.get("step")})
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {
        "model_config": model.config.to_dict(),
        "state_dict": state,
        "signal": cfg.signal,
        "resp_encoder": int(val["resp_encoder"]) if val is not None else 0,
        "selection": _plain(selection),
        "train_config": _plain(cfg.to_dict()),
        "data_summary": _plain(data_summary),
        "metrics": _plain({"history": history, "best": best}),
        "best": _plain(best),
        "preprocess": {"fs_hz": MODEL_FS, "segment_len": SEGMENT_LEN,
                       "scaling": "robust" if cfg.clip_percentile else "minmax",
                       "clip_percentile": float(cfg.clip_percentile), "resample": "polyphase"},
    }


def _plain(obj):
    """Convert numpy scalars/arrays to plain Python so ``weights_only=True`` loading works."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
