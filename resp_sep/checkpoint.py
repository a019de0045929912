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
import os
import platform
from pathlib import Path

import torch

from resp_sep.errors import ModelError, OutputError
from resp_sep.model import MODEL_NAME, ModelConfig, MultiEncoderAE

FORMAT_VERSION = 1
#: folder of the shipped models: inside the package (package data), so every install carries them
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: shipped model file per signal (in MODELS_DIR)
SHIPPED = {"ecg": "respsep-ecg.pt", "ppg": "respsep-ppg.pt"}


def versions() -> dict[str, str]:
    """Library versions recorded in every checkpoint."""
    import numpy
    import scipy

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
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ModelError(f"not a readable checkpoint ({' '.join(str(e).split())[:120]})", str(path)) from None
    if not isinstance(ckpt, dict) or ckpt.get("model_name") != MODEL_NAME:
        raise ModelError("not a respsep checkpoint", str(path))
    if int(ckpt.get("format_version", -1)) > FORMAT_VERSION:
        raise ModelError(f"checkpoint format {ckpt.get('format_version')} is newer than this respsep "
                         f"({FORMAT_VERSION}); upgrade respsep", str(path))
    for key in ("model_config", "state_dict", "resp_encoder"):
        if key not in ckpt:
            raise ModelError(f"checkpoint lacks '{key}'", str(path))
    ckpt["_path"] = str(path)
    return ckpt


def build_model(ckpt: dict) -> MultiEncoderAE:
    """Instantiate the model of a checkpoint and load its weights (eval mode)."""
    try:
        model = MultiEncoderAE(ModelConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["state_dict"])
    except Exception as e:
        raise ModelError(f"checkpoint does not fit the model ({' '.join(str(e).split())[:160]})",
                         ckpt.get("_path")) from None
    return model.eval()
