"""Shared fixtures: the real recordings in ../shared/data, running the CLI, writing small EDF/BDF files.

Add new fixtures below; keep each one small and documented.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: real recordings (never shipped with the repository; see ../shared/data/README.md)
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_REASON = "../shared/data not present (real recordings are not shipped)"


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory):
    """The separators' ONNX graphs (resp_sep/onnxrun.py) go to a cache of this test session, never the user's:
    every session exports the models it uses afresh (subprocesses inherit the variable)."""
    old = os.environ.get("RESPSEP_CACHE_DIR")
    os.environ["RESPSEP_CACHE_DIR"] = str(tmp_path_factory.mktemp("respsep-cache"))
    yield
    if old is None:
        os.environ.pop("RESPSEP_CACHE_DIR", None)
    else:
        os.environ["RESPSEP_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when it is absent (a fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(SHARED_REASON)
    return SHARED_DATA


# -------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run ``respsep ARGS`` in-process: ``run_cli(["info", path]) -> (exit_code, stdout, stderr)``."""
    from resp_sep.cli import main

    monkeypatch.delenv("RESPSEP_DEBUG", raising=False)

    def run(args: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()  # drop anything printed before
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_cli_subprocess(args: list[str], cwd: str | os.PathLike | None = None,
                       timeout: float = 60) -> tuple[int, str, str]:
    """Run ``python -m resp_sep ARGS`` in a fresh interpreter (real exit codes and streams)."""
    env = {k: v for k, v in os.environ.items() if k != "RESPSEP_DEBUG"}
    env["COLUMNS"] = "200"
    p = subprocess.run([sys.executable, "-m", "resp_sep", *map(str, args)], cwd=cwd or REPO,
                       capture_output=True, text=True, timeout=timeout, env=env, check=False)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def run_cli_proc():
    """Fixture form of :func:`run_cli_subprocess`."""
    return run_cli_subprocess


# --------------------------------------------------------------------------------- synthetic files


def write_edf(path: str | os.PathLike, channels: dict[str, tuple[float, np.ndarray]] | None = None,
              file_type: int | None = None, unit: str = "mV") -> Path:
    """Write a small EDF(+)/BDF(+) file with pyedflib and return its path.

    Parameters
    ----------
    channels : dict
        ``{label: (fs, samples)}``; default one 10-s 1.2-Hz sine ``ECG`` at 250 Hz. Each channel
        must hold a whole number of seconds.
    file_type : int, optional
        A ``pyedflib.FILETYPE_*``; default EDF+ (BDF+ for a ``.bdf`` suffix).
    """
    import pyedflib

    path = Path(path)
    if channels is None:
        fs = 250
        channels = {"ECG": (fs, np.sin(2 * np.pi * 1.2 * np.arange(10 * fs) / fs))}
    if file_type is None:
        file_type = pyedflib.FILETYPE_BDFPLUS if path.suffix.lower() == ".bdf" else pyedflib.FILETYPE_EDFPLUS
    bdf = file_type in (pyedflib.FILETYPE_BDF, pyedflib.FILETYPE_BDFPLUS)
    dmax = 2**23 - 1 if bdf else 2**15 - 1
    headers, data = [], []
    for label, (fs, x) in channels.items():
        x = np.asarray(x, dtype=np.float64)
        # a symmetric range a little wider than the data, short enough for the 8-char header field
        m = float(f"{max(1e-3, 1.02 * float(np.max(np.abs(x))) if x.size else 1.0):.3g}")
        headers.append({"label": label, "dimension": unit, "sample_frequency": fs, "physical_min": -m,
                        "physical_max": m, "digital_min": -dmax - 1, "digital_max": dmax})
        data.append(x)
    with pyedflib.EdfWriter(str(path), len(channels), file_type=file_type) as w:
        w.setSignalHeaders(headers)
        w.writeSamples(data)
    return path


@pytest.fixture
def make_edf(tmp_path):
    """Factory: ``make_edf("name.edf", channels=None, **kw)`` writes :func:`write_edf` into tmp_path."""

    def make(name: str = "rec.edf", channels=None, **kw) -> Path:
        return write_edf(tmp_path / name, channels, **kw)

    return make


# ------------------------------------------------------------------------------------------ models

#: a tiny separator (4 encoders, 4 blocks): fast on CPU, same code paths as the shipped models
TINY_MODEL = {"n_encoders": 4, "channels": [8, 8, 16, 16], "hidden": 8, "kernel_size": 5}


def make_tiny_checkpoint(path: Path, resp_encoder: int = 1, seed: int = 0, **model) -> str:
    """Save a randomly initialised tiny ECG checkpoint (speed and plumbing tests, not accuracy);
    ``model`` overrides :data:`TINY_MODEL`'s settings."""
    import torch

    from resp_sep.checkpoint import save_checkpoint
    from resp_sep.model import MultiEncoderAE

    torch.manual_seed(seed)
    m = MultiEncoderAE(**{**TINY_MODEL, **model}).eval()
    save_checkpoint({"model_config": m.config.to_dict(), "state_dict": m.state_dict(),
                     "resp_encoder": resp_encoder, "signal": "ecg"}, path)
    return str(path)


def bytes_file(name: str, data: bytes | str):
    """A builder for broken-input tests: ``build(dir)`` writes ``data`` to ``dir / name`` and returns the path."""

    def build(d: Path) -> Path:
        p = d / name
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    return build


def one_megahertz_edf(d: Path) -> Path:
    """An EDF+ with a 1 MHz channel (1000 samples per 1-ms data record), written by pyedflib."""
    import warnings

    import pyedflib

    p = d / "mhz.edf"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Forcing a specific record_duration ..."
        with pyedflib.EdfWriter(str(p), 1, file_type=pyedflib.FILETYPE_EDFPLUS) as w:
            w.setSignalHeaders([{"label": "ECG", "dimension": "mV", "sample_frequency": 1e6, "physical_min": -1,
                                 "physical_max": 1, "digital_min": -32768, "digital_max": 32767}])
            w.setDatarecordDuration(0.001)
            w.writeSamples([np.zeros(2000)])
    return p
