"""The separator on ONNX Runtime: CPU inference without importing torch.

Why (docs/performance.md, "The separator"): on CPU, importing torch alone costs ~1.4 s of CPU and
~220 MB of memory, about as much as the network's whole 8-h night; ONNX Runtime imports in ~0.1 s
(~40 MB) and runs the same network faster than torch's eager CPU path.

What runs: the respiration pathway of a checkpoint, exactly as the torch path computes it
(:class:`resp_sep.separate.RespirationNet`: the respiration encoder alone, polyphase decoder,
then the sigmoid), exported with ``torch.onnx.export`` (TorchScript exporter, opset 17) as one
graph ``x (b, in_channels, 12288) -> p (b, in_channels, 12288)`` with a dynamic batch. The
GroupNorms are exported in their two-level form (:func:`resp_sep.separate.portable_group_norm`):
ONNX Runtime's InstanceNormalization, what ``F.group_norm`` would become, drifts by ~1e-5. Scaling
and stitching are :mod:`resp_sep.segments`, shared with torch.

When the graph is made: **on first use, into a cache**, never shipped. A checkpoint's graph
lives in ``<cache>/onnx/<key>/`` (``model.onnx`` and ``meta.json``), where ``key`` is the SHA-256
of the checkpoint's bytes and of the source of the modules that define the network
(:data:`SOURCES`): a new shipped model, a user's ``--model`` or a change of the network's code
gets its own graph without any manual step, and a graph can never drift from its ``.pt``. The
cache is ``$RESPSEP_CACHE_DIR``, else ``$XDG_CACHE_HOME/respsep``, else ``~/.cache/respsep``. The
export (~3-5 s, torch imported once) checks the graph against torch on probe segments (simulated
ECG or PPG, noise, a flat segment) and records the largest difference in ``meta.json``
(:data:`TOLERANCE` in the sigmoid's [0, 1] domain); ``meta.json`` also holds what extraction
needs from the checkpoint (respiration encoder, sign, signal, scaling), so that later runs hash
the checkpoint (a few ms), read ``meta.json`` and open the graph without torch.

Why not at build time: a wheel build runs in an isolated environment without torch (pulling it
in there would download a CUDA build), an editable install never rebuilds, and a checkpoint given
with ``--model`` or shipped later by a training run would have no graph. The cache covers all of
them with one mechanism and keeps the ``.pt`` files the only source of truth.

Which back end runs (:func:`load_separator`): ``engine="auto"`` uses ONNX Runtime on CPU and torch
on CUDA (``--device cuda``, or ``auto`` when torch sees a GPU); ``"torch"`` forces the torch
reference path (:class:`resp_sep.separate.Separator`), ``"onnx"`` refuses to run otherwise.
Whenever ``auto`` cannot use ONNX Runtime (not installed, the export failed, or a graph outside
the tolerance), torch runs and the result's notes say why: never silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from resp_sep.errors import ModelError, UsageError
from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN
from resp_sep.segments import extract_array, scale_segments, unscale

#: bump when the exported graph or meta.json changes meaning (old cache entries are then ignored)
EXPORT_FORMAT = 1
#: ONNX opset of the exported graph
OPSET = 17
#: largest difference allowed between the graph's and torch's sigmoid outputs (values in [0, 1])
TOLERANCE = 1e-5
#: modules whose source defines the exported network: part of the cache key
SOURCES = ("model.py", "separate.py", "onnxrun.py", "segments.py")
ENGINES = ("auto", "onnx", "torch")
#: segments per ONNX Runtime call (OnnxSeparator.run_batch)
RUN_BATCH = int(os.environ.get("_RESPSEP_RUN_BATCH", "4"))


class ExportError(ModelError):
    """No usable graph for a checkpoint that is itself fine: the export failed, or the graph is outside
    :data:`TOLERANCE` (under ``engine="auto"`` torch then runs; with ``"onnx"`` it is exit 5)."""


# ------------------------------------------------------------------------------------------ cache


def cache_root() -> Path:
    """The cache folder: ``$RESPSEP_CACHE_DIR``, else ``$XDG_CACHE_HOME/respsep``, else ``~/.cache/respsep``."""
    env = os.environ.get("RESPSEP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "respsep"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def runtime_installed() -> bool:
    """Whether ONNX Runtime can be imported (checked without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def _ort_version() -> str:
    """ONNX Runtime's version, part of the cache key: the export's check against torch was made with
    the runtime that will run the graph (another version re-exports and re-checks)."""
    try:
        from importlib.metadata import version

        return version("onnxruntime")
    except Exception:  # noqa: BLE001 - not installed: load_separator says so before any graph is used
        return "none"


def cache_key(checkpoint: str | os.PathLike) -> str:
    """Key of a checkpoint's graph: SHA-256 of its bytes, of :data:`SOURCES`, of :data:`EXPORT_FORMAT`
    and of ONNX Runtime's version.

    Raises
    ------
    ModelError
        The checkpoint cannot be read.
    """
    path = Path(checkpoint)
    try:
        ck = _sha256(path)
    except OSError as e:
        raise ModelError(f"cannot read the checkpoint ({e.strerror or e})", str(path)) from None
    h = hashlib.sha256(f"respsep-onnx {EXPORT_FORMAT} opset {OPSET} {ck} ort {_ort_version()}".encode())
    here = Path(__file__).resolve().parent
    for name in SOURCES:
        try:
            h.update((here / name).read_bytes())
        except OSError:  # an install without sources (compiled only): the version stands in
            from resp_sep import __version__

            h.update(f"{name} of respsep {__version__}".encode())
    return h.hexdigest()[:32]


@dataclass
class Graph:
    """A checkpoint's exported graph and what extraction needs from the checkpoint.

    Attributes
    ----------
    onnx : bytes
        The serialized graph, read once (its hash checked on these bytes): a run never opens the
        cache file again, so deleting or replacing the cache during a run is safe.
    meta : dict
        ``meta.json``: ``resp_encoder``, ``resp_sign``, ``signal``, ``clip_pct``, ``in_channels``,
        ``max_abs_diff`` (graph vs torch on the probe segments), ``ok`` (within :data:`TOLERANCE`), ...
    note : str
        Why the cache was not used, if it was not (shown to the user).
    """

    onnx: bytes
    meta: dict
    note: str = ""


def _read_entry(folder: Path, key: str) -> Graph | None:
    """The cache entry in ``folder`` if it is complete and intact (its graph's hash matches), else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        onnx = (folder / "model.onnx").read_bytes()
        if (meta.get("format") != EXPORT_FORMAT or meta.get("key") != key or meta.get("segment_len") != SEGMENT_LEN
                or hashlib.sha256(onnx).hexdigest() != meta.get("onnx_sha256")):
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return Graph(onnx, meta)


def graph_for(checkpoint: str | os.PathLike, log: Callable[[str], None] | None = None) -> Graph:
    """The exported graph of a checkpoint: from the cache, or exported now (imports torch) and cached.

    Parameters
    ----------
    checkpoint : path
        A ``.pt`` file (:func:`resp_sep.checkpoint.resolve_model` resolves names first).
    log : callable, optional
        Told when an export starts (it takes a few seconds).

    Raises
    ------
    ModelError
        The checkpoint is missing, unreadable or invalid (found while exporting it).
    ExportError
        The export itself failed (e.g. ``onnx`` or the exporter missing).
    """
    path = Path(checkpoint)
    if not path.is_file():
        from resp_sep.checkpoint import load_checkpoint

        load_checkpoint(path)  # the usual one-line ModelError for a missing path or a folder
    key = cache_key(path)
    folder = cache_root() / "onnx" / key
    entry = _read_entry(folder, key)
    if entry is not None:
        return entry
    if log:
        log(f"exporting {path.name} to ONNX (once per checkpoint; cache {folder.parent})")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
    except OSError as e:
        onnx, meta = export(path, key)
        return Graph(onnx, meta, note=f"model cache {folder.parent} not writable ({e.strerror or e}): the ONNX "
                                      "graph is exported again in every run (set RESPSEP_CACHE_DIR)")
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep a shared RESPSEP_CACHE_DIR to its first user
        onnx, meta = export(path, key)
        (tmp / "model.onnx").write_bytes(onnx)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        done = _read_entry(folder, key)
        if done is not None:  # another run finished the same export meanwhile: use its entry
            return done
        if folder.exists():  # incomplete or damaged: moved aside first (a rename), then removed
            aside = Path(tempfile.mkdtemp(prefix=f".{key}.old.", dir=folder.parent))
            try:
                os.rename(folder, aside / "entry")
            except OSError:
                pass
            shutil.rmtree(aside, ignore_errors=True)
        try:
            os.rename(tmp, folder)  # atomic: a concurrent run sees the whole entry or none
        except OSError:
            if _read_entry(folder, key) is None:  # not another run's complete entry
                raise
    except OSError as e:
        return Graph(onnx, meta, note=f"model cache {folder.parent} not writable ({e.strerror or e}): the ONNX "
                                      "graph is exported again in every run (set RESPSEP_CACHE_DIR)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _read_entry(folder, key) or Graph(onnx, meta)


# ----------------------------------------------------------------------------------------- export


def probe_segments(signal: str, in_channels: int = 1) -> np.ndarray:
    """Raw segments the export is checked on: 3 of a simulated ``signal`` at 200 Hz, white noise, a flat one.

    Returns
    -------
    ndarray, shape (5, in_channels, 12288), float32 (unscaled)
    """
    from resp_sep.preprocess import resample
    from resp_sep.simulate import simulate

    sim = simulate(duration_s=3 * SEGMENT_LEN / MODEL_FS + 2, fs=256, seed=20261207)
    x = resample(sim.ppg if signal == "ppg" else sim.ecg, 256, MODEL_FS).astype(np.float32)
    segs = [x[i * SEGMENT_LEN:(i + 1) * SEGMENT_LEN] for i in range(3)]
    segs.append(np.random.default_rng(0).standard_normal(SEGMENT_LEN).astype(np.float32))
    segs.append(np.zeros(SEGMENT_LEN, np.float32))
    return np.repeat(np.stack(segs)[:, None], in_channels, axis=1)


def export(checkpoint: str | os.PathLike, key: str = "") -> tuple[bytes, dict]:
    """Export a checkpoint's respiration pathway to ONNX and check it against torch (imports torch).

    Returns
    -------
    onnx : bytes
        The serialized graph (input ``x``, output ``p``).
    meta : dict
        What :class:`OnnxSeparator` needs (see :class:`Graph`) and the check's result.

    Raises
    ------
    ModelError
        The checkpoint is invalid (:func:`resp_sep.checkpoint.load_checkpoint`, ``build_model``).
    ExportError
        The exporter failed, or ONNX Runtime cannot open its graph.
    """
    import io
    import warnings

    import torch

    from resp_sep import __version__
    from resp_sep.checkpoint import build_model, load_checkpoint
    from resp_sep.separate import RespirationNet

    path = Path(checkpoint)
    ck = load_checkpoint(path)
    model = build_model(ck)
    k = int(ck["resp_encoder"])
    in_ch = int(model.config.in_channels)

    class _Probabilities(torch.nn.Module):
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.net(x))

    try:
        with torch.no_grad():
            reference = RespirationNet(model, k).eval()  # the torch path, as Separator runs it
            portable = _Probabilities(RespirationNet(model, k, portable=True).eval()).eval()
    except ValueError as e:  # e.g. an even kernel: no fast form, and the torch Separator cannot run it either
        raise ModelError(f"the separator cannot run this network ({e})", str(path)) from None
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
            torch.onnx.export(portable, (torch.zeros(2, in_ch, SEGMENT_LEN),), buf, dynamo=False,
                              input_names=["x"], output_names=["p"], opset_version=OPSET,
                              dynamic_axes={"x": {0: "batch"}, "p": {0: "batch"}})
    except Exception as e:  # noqa: BLE001 - exporter missing or failing: the caller decides (torch runs)
        raise ExportError(f"ONNX export failed ({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                          str(path)) from None
    onnx = buf.getvalue()

    raw = probe_segments(str(ck.get("signal") or "ecg"), in_ch)
    clip = float((ck.get("preprocess") or {}).get("clip_percentile", 0.0) or 0.0)
    x = np.stack([scale_segments(raw[:, c], clip)[0] for c in range(in_ch)], axis=1)
    with torch.inference_mode():
        want = torch.sigmoid(reference(torch.from_numpy(x))).numpy()
    try:
        got = _session(onnx, 1).run(None, {"x": x})[0]
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"ONNX Runtime cannot run the exported graph ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:160]})", str(path)) from None
    diff = float(np.max(np.abs(got.astype(np.float64) - want))) if got.shape == want.shape else float("inf")
    import onnxruntime

    meta = {
        "format": EXPORT_FORMAT, "key": key, "opset": OPSET,
        "onnx_sha256": hashlib.sha256(onnx).hexdigest(),
        "checkpoint": str(path), "checkpoint_sha256": _sha256(path),
        "resp_encoder": k, "resp_sign": float(ck.get("resp_sign", 1.0) or 1.0),
        "signal": str(ck.get("signal") or ""), "clip_pct": clip, "in_channels": in_ch,
        "segment_len": SEGMENT_LEN, "model_config": model.config.to_dict(),
        "max_abs_diff": diff, "tolerance": TOLERANCE, "ok": bool(diff <= TOLERANCE),
        "probe": "3 simulated segments of the checkpoint's signal, white noise, a flat segment",
        "versions": {"respsep": __version__, "torch": str(torch.__version__),
                     "onnxruntime": str(onnxruntime.__version__)},
    }
    return onnx, meta


# -------------------------------------------------------------------------------------- inference


def _session(onnx: Path | bytes, threads: int):
    """An ONNX Runtime session on the CPU with ``threads`` intra-op threads that sleep when idle."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # idle threads sleep instead of spinning: on a busy machine a spinning pool waits for a
    # descheduled thread while burning the CPU it needs (as torch's OMP_WAIT_POLICY=PASSIVE)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx if isinstance(onnx, bytes) else str(onnx), so,
                                providers=["CPUExecutionProvider"])


@dataclass
class OnnxSeparator:
    """A checkpoint's respiration source on ONNX Runtime (CPU): the torch :class:`~resp_sep.separate.Separator`'s
    interface for extraction, without torch.

    Attributes
    ----------
    resp_encoder : int
    sign : float
        +1 or -1 (inhalation up).
    signal : str
    name : str
        The checkpoint's path.
    clip_pct : float
        Robust scaling of the checkpoint (0 = min-max).
    threads : int
        ONNX Runtime intra-op threads.
    note : str
        Remark for the user (e.g. the cache could not be written), or "".
    """

    graph: Graph
    resp_encoder: int
    sign: float = 1.0
    signal: str = "ecg"
    name: str = ""
    clip_pct: float = 0.0
    threads: int = 1
    note: str = ""
    device: str = "cpu"
    engine: str = "onnx"
    #: segments per network call: the activations of a call take ~6 MB per segment, and the outputs do
    #: not depend on how a batch is split (tests/test_onnxrun.py)
    run_batch: int = RUN_BATCH
    _sess: object = field(default=None, repr=False)

    @classmethod
    def from_checkpoint(cls, path_or_name: str | None, signal: str = "ecg", threads: int = 0,
                        log: Callable[[str], None] | None = None) -> OnnxSeparator:
        """Load a checkpoint's graph (exported now if not cached).

        ``threads = 0``: :func:`resp_sep.parallel.budget` (``OMP_NUM_THREADS`` or the cores, at most 2).

        Raises
        ------
        ModelError
            Checkpoint missing or invalid.
        ExportError
            No usable graph (export failed, or the graph differs from torch beyond :data:`TOLERANCE`).
        """
        from resp_sep.checkpoint import resolve_model
        from resp_sep.parallel import budget

        path = resolve_model(path_or_name, signal)
        g = graph_for(path, log)
        m = g.meta
        if not m.get("ok"):
            raise ExportError(f"its ONNX graph differs from torch by {m.get('max_abs_diff'):.2g} "
                              f"(> {TOLERANCE:g})", str(path))
        sep = cls(graph=g, resp_encoder=int(m["resp_encoder"]), sign=float(m.get("resp_sign") or 1.0),
                  signal=str(m.get("signal") or signal), name=str(path), clip_pct=float(m.get("clip_pct") or 0.0),
                  threads=threads if threads > 0 else budget(), note=g.note)
        try:  # opened now, so that a graph this ONNX Runtime cannot load falls back (auto) or is exit 5
            sep._sess = _session(g.onnx, 1)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ExportError(f"ONNX Runtime cannot load its graph ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:160]})", str(path)) from None
        return sep

    @property
    def batch_workers(self) -> int:
        """Batches run at once, each on one thread (:func:`resp_sep.segments.map_batches`)."""
        return self.threads

    @property
    def session(self):
        """One ONNX Runtime session with one intra-op thread, shared by the :attr:`batch_workers` (``run`` is thread-safe)."""
        if self._sess is None:
            self._sess = _session(self.graph.onnx, 1)
        return self._sess

    def release(self) -> None:
        """Drop the session and the activations ONNX Runtime keeps for reuse (~25 MB for two workers);
        the next call opens a new one (0.1 s). :func:`resp_sep.stream.extract_stream` calls it when a
        channel is done, so that the stages after the separator (fusion, rates) do not carry it."""
        self._sess = None

    def respiration_segments(self, segs: np.ndarray) -> np.ndarray:
        """Respiration source of raw segments, in the input's units with the mean removed.

        Parameters
        ----------
        segs : ndarray, shape (b, L)
            Raw (unscaled) segments at 200 Hz.

        Returns
        -------
        ndarray, shape (b, L), float32
        """
        x, span = scale_segments(segs, self.clip_pct)
        n = self.run_batch
        p = np.concatenate([self.session.run(None, {"x": x[a:a + n, None]})[0][:, 0] for a in range(0, len(x), n)])
        return unscale(p, span, self.sign)

    def extract(self, x: np.ndarray, fs: float = MODEL_FS, *, out_fs: float = 25.0, hop: int | None = None,
                batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
                path: str | None = None) -> np.ndarray:
        """Respiration waveform of a whole recording (:meth:`resp_sep.separate.Separator.extract`)."""
        return extract_array(self, x, fs, out_fs=out_fs, hop=hop, batch_size=batch_size, progress=progress,
                             path=path)


# ------------------------------------------------------------------------------------ which engine


def cuda_possible() -> bool:
    """Whether torch could see a GPU, decided without importing torch: a CUDA build of torch is
    installed and an NVIDIA driver is loaded. False means torch would answer CPU too."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    if not any(lib.glob("libtorch_cuda*")):
        return False
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def check_engine(engine: str) -> str:
    """``auto``, ``onnx`` or ``torch`` (case-insensitive); anything else is a :class:`UsageError`."""
    e = str(engine or "auto").strip().lower()
    if e not in ENGINES:
        raise UsageError(f"--engine must be auto, onnx or torch (got '{engine}')")
    return e


def uses_onnx(device: str = "auto", engine: str = "auto") -> bool:
    """Whether :func:`load_separator` tries ONNX Runtime for this device and engine (no torch imported on CPU)."""
    engine = check_engine(engine)
    device = str(device or "auto").lower()
    if engine == "torch" or device.startswith("cuda"):
        if engine == "onnx":
            raise UsageError("--engine onnx runs on the CPU only (use --device cpu, or --engine torch for CUDA)")
        return False
    if device == "auto" and cuda_possible():
        from resp_sep.train import resolve_device

        if resolve_device("auto").type == "cuda":
            return engine == "onnx"
    return True


def load_separator(path_or_name: str | None, signal: str = "ecg", device: str = "auto", threads: int = 0,
                   engine: str = "auto", log: Callable[[str], None] | None = None):
    """The separator a run uses: :class:`OnnxSeparator` on CPU, the torch
    :class:`~resp_sep.separate.Separator` on CUDA or with ``engine="torch"``.

    Both have ``respiration_segments``, ``extract``, ``resp_encoder``, ``sign``, ``signal``, ``name``,
    ``device`` and ``note`` (why ONNX Runtime was not used under ``auto``, or "").

    Raises
    ------
    ModelError
        Checkpoint missing or invalid.
    UsageError
        ``engine="onnx"`` on CUDA.
    ExportError
        ``engine="onnx"`` and no usable graph.
    """
    engine = check_engine(engine)
    note = ""
    if uses_onnx(device, engine):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            if engine == "onnx":
                raise ExportError("onnxruntime is not installed (pip install onnxruntime)") from None
            note = "onnxruntime is not installed: the separator ran on torch (slower)"
        else:
            try:
                return OnnxSeparator.from_checkpoint(path_or_name, signal, threads, log)
            except ExportError as e:
                if engine == "onnx":
                    raise
                note = f"separator on torch, not ONNX Runtime: {e}"
    from resp_sep.separate import Separator

    sep = Separator.from_checkpoint(path_or_name, signal, device, threads=threads)
    sep.note = note
    return sep
