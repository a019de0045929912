"""Checkpoints: plain dicts, written atomically, loaded with ``torch.load(weights_only=True)``.

Keys (format version 1; docs/checkpoints.md):

``format_version`` int · ``model_name`` str · ``model_config`` dict (constructor args) ·
``state_dict`` · ``signal`` "ecg"|"ppg" · ``resp_encoder`` int · ``selection`` dict (label-free
scores of every encoder and, when references existed, their MAE) · ``train_config`` dict (the
resolved training options) · ``data_summary`` dict (files, segments, subjects per split) ·
``metrics`` dict (per-epoch history and the chosen epoch) · ``preprocess`` dict · ``versions``
dict · ``created`` str. Resumable "last" checkpoints add ``optimizer``, ``scheduler``,
``epoch``, ``rng`` and ``best``.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from resp_sep.errors import ModelError, OutputError

if TYPE_CHECKING:
    import torch

    from resp_sep.model import MultiEncoderAE

# torch is imported inside the functions that need it: resolving a model name and checking a model
# whose ONNX graph is cached (resp_sep.onnxrun) must not pay its import (1.4 s of CPU, 220 MB)
FORMAT_VERSION = 1
#: folder of the shipped models: inside the package (package data), so every install carries them
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: shipped model file per signal (in MODELS_DIR)
SHIPPED = {"ecg": "respsep-ecg.pt", "ppg": "respsep-ppg.pt"}


def versions() -> dict[str, str]:
    """Library versions recorded in every checkpoint."""
    import numpy
    import scipy
    import torch

    from resp_sep import __version__

    out = {"respsep": __version__, "torch": str(torch.__version__), "numpy": str(numpy.__version__),
           "scipy": str(scipy.__version__), "python": platform.python_version()}
    try:
        import neurokit2

        out["neurokit2"] = str(neurokit2.__version__)
    except Exception:  # pragma: no cover
        pass
    return out


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename)."""
    import torch

    from resp_sep.model import MODEL_NAME

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ckpt = {"format_version": FORMAT_VERSION, "model_name": MODEL_NAME, "versions": versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **ckpt}
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write checkpoint: {e.strerror or e}", str(path)) from None
    return path


def resolve_model(name_or_path: str | None, signal: str) -> Path:
    """Find a checkpoint: a path, a shipped model name (``ecg``/``ppg``/file name), or the default.

    Raises
    ------
    ModelError
        When nothing is found.
    """
    if name_or_path:
        p = Path(name_or_path)
        if p.exists():
            return p
        key = name_or_path.lower()
        fname = SHIPPED.get(key, name_or_path if name_or_path.endswith(".pt") else f"{name_or_path}.pt")
        cand = MODELS_DIR / fname
        if cand.exists():
            return cand
        raise ModelError(f"no model '{name_or_path}' (not a file, and not a shipped model in {MODELS_DIR})")
    cand = MODELS_DIR / SHIPPED.get(signal, "")
    if not cand.exists():
        raise ModelError(f"no shipped {signal} model at {cand}; train one with 'respsep train' and pass --model")
    return cand


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint (``weights_only=True``: no code runs from the file).

    Raises
    ------
    ModelError
        Missing, corrupt, or not a respsep checkpoint of a known format.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError("no such checkpoint file", str(path))
    if path.is_dir():
        raise ModelError("is a folder, not a checkpoint file", str(path))
    import torch

    from resp_sep.model import MODEL_NAME

    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ModelError(f"not a readable checkpoint ({_clip(str(e), 120)})", str(path)) from None
    if not isinstance(ckpt, dict) or ckpt.get("model_name") != MODEL_NAME:
        raise ModelError("not a respsep checkpoint", str(path))
    try:
        version = int(ckpt.get("format_version", -1))
    except (TypeError, ValueError):
        raise ModelError(f"invalid format_version {ckpt.get('format_version')!r}", str(path)) from None
    if version > FORMAT_VERSION:
        raise ModelError(f"checkpoint format {ckpt.get('format_version')} is newer than this respsep "
                         f"({FORMAT_VERSION}); upgrade respsep", str(path))
    for key in ("model_config", "state_dict", "resp_encoder"):
        if key not in ckpt:
            raise ModelError(f"checkpoint lacks '{key}'", str(path))
    check_checkpoint(ckpt, str(path))
    ckpt["_path"] = str(path)
    return ckpt


def check_checkpoint(ckpt: dict, path: str | None = None) -> None:
    """Sanity of a loaded checkpoint: usable config, respiration encoder in range, finite weights.

    A checkpoint saved from a diverged run (NaN weights) or edited by hand would otherwise load
    and produce a CSV of NaN or a plausible-looking wrong waveform.

    Raises
    ------
    ModelError
        Naming the file and the first problem found.
    """
    import torch

    from resp_sep.model import ModelConfig

    cfg = ckpt.get("model_config")
    if not isinstance(cfg, dict):
        raise ModelError("model_config is not a dict", path)
    try:
        config = ModelConfig(**cfg)
    except Exception as e:
        raise ModelError(f"invalid model_config ({_clip(str(e), 120)})", path) from None
    k = ckpt.get("resp_encoder")
    if isinstance(k, bool) or not isinstance(k, int) and not (isinstance(k, torch.Tensor) and k.numel() == 1):
        raise ModelError(f"resp_encoder must be an integer (got {k!r})", path)
    k = int(k)
    if not 0 <= k < config.n_encoders:
        raise ModelError(f"respiration encoder index {k} is out of range (the model has {config.n_encoders} "
                         f"encoders, 0..{config.n_encoders - 1})", path)
    if ckpt.get("signal") is not None and ckpt.get("signal") not in ("ecg", "ppg"):
        raise ModelError(f"signal must be 'ecg' or 'ppg' (got {ckpt.get('signal')!r})", path)
    sign = ckpt.get("resp_sign")
    if sign is not None:
        try:
            ok = math.isfinite(float(sign)) and float(sign) != 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ModelError(f"resp_sign must be +1 or -1 (got {sign!r})", path)
    sd = ckpt.get("state_dict")
    if not isinstance(sd, dict) or not sd:
        raise ModelError("state_dict is empty or not a dict of tensors", path)
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor):
            raise ModelError(f"state_dict entry '{name}' is not a tensor", path)
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ModelError(f"weights contain NaN or infinite values ({bad} of {t.numel()} in '{name}'): "
                             "the training run diverged or the file was damaged", path)


def build_model(ckpt: dict) -> MultiEncoderAE:
    """Instantiate the model of a checkpoint and load its weights (eval mode).

    Raises
    ------
    ModelError
        The state dict does not match the architecture its ``model_config`` describes.
    """
    from resp_sep.model import ModelConfig, MultiEncoderAE

    path = ckpt.get("_path")
    try:
        model = MultiEncoderAE(ModelConfig(**ckpt["model_config"]))
    except Exception as e:
        raise ModelError(f"invalid model_config ({_clip(str(e), 120)})", path) from None
    want = model.state_dict()
    sd = ckpt["state_dict"]
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    shapes = [k for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. '{missing[0]}')")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. '{extra[0]}')")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of the wrong shape (e.g. '{k}' {tuple(sd[k].shape)}, "
                         f"the config needs {tuple(want[k].shape)})")
        raise ModelError("weights do not match the model_config: tensors " + "; ".join(parts), path)
    try:
        model.load_state_dict(sd)
    except Exception as e:
        raise ModelError(f"checkpoint does not fit the model ({_clip(str(e), 160)})", path) from None
    return model.eval()


def _clip(text: str, n: int) -> str:
    """One line of at most about ``n`` characters, cut at a word boundary (never mid-word)."""
    text = " ".join(str(text).split())
    if len(text) <= n:
        return text
    cut = text[:n].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + " ..."


def checkpoint_signal(path: str | os.PathLike, device: str = "auto", engine: str = "auto") -> str:
    """The signal ("ecg", "ppg" or "") a checkpoint was trained on; without torch when its ONNX graph is
    cached (:mod:`resp_sep.onnxrun`) and the run will use it.

    Raises
    ------
    ModelError
    """
    from resp_sep.onnxrun import ExportError, graph_for, uses_onnx

    if uses_onnx(device, engine):
        try:
            return str(graph_for(path).meta.get("signal") or "")
        except ExportError:
            pass  # torch will run this checkpoint: read it with torch
    return str(load_checkpoint(path).get("signal") or "")


def check_model(name_or_path: str | None, signals: list[str], device: str = "cpu", engine: str = "auto") -> list[Path]:
    """Load and check, before any work, every model a run may use (exit 5 on the first problem).

    When the run will use ONNX Runtime (:func:`resp_sep.onnxrun.uses_onnx`), the check is the
    export of the checkpoint's graph, done here once (torch imported) and cached; a cached graph
    was made from a checkpoint with these very bytes that passed these checks, so later runs check
    without torch.

    Parameters
    ----------
    name_or_path : str or None
        ``--model``: a checkpoint path or shipped name; ``None`` for the shipped model per signal.
    signals : list of str
        Signals the run may extract (``["ecg", "ppg"]`` for ``--signal auto``). Without
        ``--model``, a shipped model missing for one of several signals is left for the files
        that need it to report; at least one must exist.

    Returns
    -------
    list of Path
        The checkpoints checked.

    Raises
    ------
    ModelError
    """
    paths: list[Path] = []
    missing: ModelError | None = None
    for sig in signals:
        try:
            p = resolve_model(name_or_path, sig)
        except ModelError as e:
            if name_or_path or len(signals) == 1:
                raise
            missing = missing or e
            continue
        if p not in paths:
            paths.append(p)
    if not paths and missing is not None:
        raise missing
    from resp_sep.onnxrun import ExportError, graph_for, runtime_installed, uses_onnx

    # without onnxruntime the run uses torch (load_separator says so): no export to check here
    onnx = uses_onnx(device, engine) and runtime_installed()
    for p in paths:
        if onnx:
            try:
                graph_for(p)
                continue
            except ExportError:
                pass  # torch will run it (a note says why): check it as torch loads it
        build_model(load_checkpoint(p, map_location="cpu"))
    return paths
