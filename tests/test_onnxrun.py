"""The separator on ONNX Runtime (resp_sep/onnxrun.py) against the torch reference path.

The ONNX graph must give the torch path's outputs within 1e-5 (sigmoid domain, i.e. relative to
each segment's range) on real and simulated segments, for both shipped models and a user
checkpoint; it is exported once per checkpoint into a cache keyed by the checkpoint's bytes, and
extraction with a warm cache never imports torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, make_tiny_checkpoint

from resp_sep.errors import EXIT_USAGE
from resp_sep.onnxrun import (
    TOLERANCE,
    ExportError,
    OnnxSeparator,
    cache_key,
    cache_root,
    graph_for,
    load_separator,
    probe_segments,
)
from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN, resample


def _real_segments(kind: str) -> np.ndarray | None:
    """Three raw 200-Hz segments of a MARSH recording's ECG or PPG (None without ../shared/data)."""
    from resp_sep.io import read_recording

    f = SHARED_DATA / "marsh-edf" / "marsh-0005.edf"
    if not f.is_file():
        return None
    rec = read_recording(f)
    label = next(lb for lb in rec.labels if (lb.upper().startswith("ECG") if kind == "ecg" else "PLETH" in lb.upper()))
    ch = rec.channel(label)
    x = resample(ch.read(0, int(ch.fs * 400)), ch.fs, MODEL_FS).astype(np.float32)
    return np.stack([x[a:a + SEGMENT_LEN] for a in (0, 20_000, 40_000)])


def _pair(name: str | None, kind: str):
    from resp_sep.separate import Separator

    return OnnxSeparator.from_checkpoint(name, kind, threads=2), Separator.from_checkpoint(name, kind, "cpu", threads=2)


def _sigmoid_domain_diff(onnx_sep, torch_sep, raw: np.ndarray) -> float:
    """Largest difference of the two back ends' outputs relative to each segment's range (the sigmoid's [0, 1])."""
    span = np.ptp(raw.astype(np.float32), axis=1, keepdims=True)
    a = onnx_sep.respiration_segments(raw)
    b = torch_sep.respiration_segments(raw)
    return float(np.max(np.abs(a.astype(np.float64) - b) / np.where(span > 0, span, 1.0)))


@pytest.mark.parametrize("kind", ["ecg", "ppg"])
def test_shipped_models_equal_torch_within_tolerance(kind):
    onnx_sep, torch_sep = _pair(None, kind)
    assert onnx_sep.resp_encoder == torch_sep.resp_encoder and onnx_sep.sign == torch_sep.sign
    assert onnx_sep.signal == torch_sep.signal == kind and onnx_sep.name == torch_sep.name
    assert onnx_sep.graph.meta["ok"] and onnx_sep.graph.meta["max_abs_diff"] <= TOLERANCE
    sim = probe_segments(kind)[:, 0]
    batches = [sim, sim[:3] * 250.0 + 3.0]  # simulated; rescaled and offset (the scaling must match too)
    real = _real_segments(kind)
    if real is not None:
        batches.append(real)
    for raw in batches:
        assert _sigmoid_domain_diff(onnx_sep, torch_sep, raw.astype(np.float32)) <= TOLERANCE


@pytest.mark.parametrize("kind", ["ecg", "ppg"])
def test_spiky_segments_as_exact_as_torch(kind):
    """Spikes 40x the signal's range squeeze it into 1/40 of the network's input: there torch's own
    float32 result is ~1e-5 away from a float64 computation, and the graph's must be no further."""
    import copy

    import torch

    from resp_sep.segments import scale_segments

    onnx_sep, torch_sep = _pair(None, kind)
    rng = np.random.default_rng(1)
    raw = (probe_segments(kind)[:3, 0] + np.where(rng.random((3, SEGMENT_LEN)) < 1e-3, 40.0, 0.0)).astype(np.float32)
    x, _ = scale_segments(raw)
    exact = copy.deepcopy(torch_sep._fast_net()).double()
    with torch.inference_mode():
        p64 = torch.sigmoid(exact(torch.from_numpy(x)[:, None].double())).numpy()
        p32 = torch.sigmoid(torch_sep._fast_net()(torch.from_numpy(x)[:, None])).numpy()
    p_onnx = onnx_sep.session.run(None, {"x": x[:, None]})[0]
    assert np.max(np.abs(p_onnx - p64)) <= max(TOLERANCE, np.max(np.abs(p32 - p64)))
    assert np.max(np.abs(p_onnx - p32)) <= 2 * TOLERANCE


def test_real_segments_present_when_shared_data_is():
    """The comparison above uses real MARSH segments whenever ../shared/data is there (CI has it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    assert _real_segments("ecg").shape == (3, SEGMENT_LEN) and _real_segments("ppg").shape == (3, SEGMENT_LEN)


def test_user_checkpoint_whole_recording_equal_torch(tmp_path):
    """A checkpoint given with --model: its own graph; whole-recording waveforms within 1e-5 of the range."""
    from resp_sep.simulate import simulate

    ck = make_tiny_checkpoint(tmp_path / "tiny.pt", resp_encoder=2, seed=3)
    onnx_sep, torch_sep = _pair(ck, "ecg")
    assert onnx_sep.resp_encoder == 2 and (cache_root() / "onnx" / cache_key(ck) / "model.onnx").is_file()
    x = simulate(duration_s=200, fs=256, seed=2).ecg
    a, b = onnx_sep.extract(x, 256, hop=4096), torch_sep.extract(x, 256, hop=4096)
    assert a.shape == b.shape and a.dtype == np.float32
    assert np.max(np.abs(a - b)) <= TOLERANCE * np.ptp(b)


def test_streamed_equals_whole_array_bit_for_bit():
    """extract_stream with the ONNX back end gives exactly its whole-array extraction (same batches)."""
    from resp_sep.simulate import simulate
    from resp_sep.stream import extract_stream

    sep = OnnxSeparator.from_checkpoint(None, "ecg", threads=2)
    x = simulate(duration_s=300, fs=256, seed=4).ecg
    whole = sep.extract(x, 256, hop=3000, batch_size=3)
    streamed = extract_stream(sep, lambda a, b: x[a:b], len(x), 256, hop=3000, batch_size=3, block=5000)
    assert np.array_equal(whole, streamed)


def test_thread_count_does_not_change_outputs():
    """A -j batch worker (1 thread) and a single run (2 batches at once) give the same numbers."""
    from resp_sep.simulate import simulate

    x = simulate(duration_s=400, fs=256, seed=6).ecg
    one = OnnxSeparator.from_checkpoint(None, "ecg", threads=1)
    two = OnnxSeparator.from_checkpoint(None, "ecg", threads=2)
    assert one.batch_workers == 1 and two.batch_workers == 2
    assert np.array_equal(one.extract(x, 256, batch_size=2), two.extract(x, 256, batch_size=2))


def test_cache_follows_the_checkpoint_bytes(tmp_path):
    """A checkpoint replaced at the same path (a new shipped model) gets its own graph, with no manual step."""
    p = tmp_path / "model.pt"
    make_tiny_checkpoint(p, resp_encoder=1, seed=0)
    g1 = graph_for(p)
    k1 = cache_key(p)
    assert graph_for(p).onnx == g1.onnx  # the second time: from the cache
    make_tiny_checkpoint(p, resp_encoder=3, seed=1)
    g2 = graph_for(p)
    assert cache_key(p) != k1 and g2.meta["resp_encoder"] == 3 and g2.onnx != g1.onnx
    assert g2.meta["checkpoint_sha256"] != g1.meta["checkpoint_sha256"]


def test_damaged_cache_entry_is_exported_again(tmp_path):
    p = make_tiny_checkpoint(tmp_path / "m.pt")
    g = graph_for(p)
    f = cache_root() / "onnx" / cache_key(p) / "model.onnx"
    f.write_bytes(f.read_bytes()[:1000])  # truncated (a full disk, a copy gone wrong)
    g2 = graph_for(p)
    assert g2.onnx == g.onnx and g2.meta["ok"]
    raw = probe_segments("ecg")[:2, 0]
    assert np.isfinite(OnnxSeparator.from_checkpoint(p).respiration_segments(raw)).all()


def test_unwritable_cache_still_runs_and_says_so(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RESPSEP_CACHE_DIR", str(blocker / "cache"))
    sep = OnnxSeparator.from_checkpoint(make_tiny_checkpoint(tmp_path / "m.pt"))
    assert isinstance(sep.graph.onnx, bytes) and "not writable" in sep.note and "RESPSEP_CACHE_DIR" in sep.note
    assert np.isfinite(sep.respiration_segments(probe_segments("ecg")[:1, 0])).all()


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RESPSEP_CACHE_DIR", str(tmp_path / "a"))
    assert cache_root() == tmp_path / "a"
    monkeypatch.delenv("RESPSEP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "respsep"


def test_engine_choice(tmp_path, monkeypatch):
    import resp_sep.onnxrun as O
    from resp_sep.errors import UsageError
    from resp_sep.separate import Separator

    ck = make_tiny_checkpoint(tmp_path / "m.pt")
    assert isinstance(load_separator(ck, "ecg", "cpu"), OnnxSeparator)
    t = load_separator(ck, "ecg", "cpu", engine="torch")
    assert isinstance(t, Separator) and t.note == ""
    with pytest.raises(UsageError):
        load_separator(ck, "ecg", "cuda", engine="onnx")
    with pytest.raises(UsageError):
        load_separator(ck, "ecg", "cpu", engine="tensorrt")

    def broken(*a, **k):
        raise ExportError("ONNX export failed (exporter missing)")

    monkeypatch.setattr(O, "export", broken)
    other = make_tiny_checkpoint(tmp_path / "other.pt", seed=5)  # not cached yet
    fallback = load_separator(other, "ecg", "cpu")
    assert isinstance(fallback, Separator) and "exporter missing" in fallback.note  # torch, and it says why
    with pytest.raises(ExportError):
        load_separator(other, "ecg", "cpu", engine="onnx")


def test_broken_checkpoint_is_a_model_error_not_an_export_error(tmp_path):
    from resp_sep.errors import ModelError

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError) as e:
        load_separator(str(bad), "ecg", "cpu")
    assert not isinstance(e.value, ExportError) and e.value.exit_code == 5


def test_bad_engine_is_a_usage_error(run_cli, tmp_path):
    code, _, err = run_cli(["extract", tmp_path / "x.edf", "--method", "separator", "--engine", "bogus"])
    assert code == EXIT_USAGE and "--engine" in err and len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------------------------- whole process


def _extract_reporting_torch(args: list[str], cwd: Path) -> dict:
    """``respsep ARGS`` in a fresh interpreter; returns its JSON report plus whether torch was imported."""
    code = ("import json, sys\nfrom resp_sep.cli import main\nrc = main(sys.argv[1:])\n"
            "sys.stderr.write(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}) + '\\n')\n")
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "COLUMNS": "200"}, check=False)
    status = json.loads(p.stderr.strip().splitlines()[-1])
    assert status["rc"] == 0, p.stderr
    return {**status, "report": json.loads(p.stdout) if p.stdout.strip().startswith("{") else None}


@pytest.mark.slow
def test_extraction_with_a_warm_cache_never_imports_torch(tmp_path):
    from resp_sep.simulate import simulate, write_simulation

    rec = write_simulation(simulate(duration_s=150, fs=256, seed=1), tmp_path / "r.edf")
    args = ["extract", str(rec), "--method", "separator", "--overwrite", "--json"]
    first = _extract_reporting_torch([*args, "--out", "a.csv"], tmp_path)  # may export (torch)
    second = _extract_reporting_torch([*args, "--out", "b.csv"], tmp_path)
    assert not second["torch"], "torch imported although the model's graph was cached"
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert first["report"]["results"][0]["model"].endswith("respsep-ecg.pt")
    # the torch reference path is still one option away, and within the tolerance of the graph
    ref = _extract_reporting_torch([*args, "--out", "c.csv", "--engine", "torch"], tmp_path)
    assert ref["torch"]
    a = np.loadtxt(tmp_path / "b.csv", delimiter=",", skiprows=1)
    c = np.loadtxt(tmp_path / "c.csv", delimiter=",", skiprows=1)
    assert a.shape == c.shape and np.array_equal(a[:, 0], c[:, 0])
    assert np.max(np.abs(a[:, 1] - c[:, 1])) <= 2 * TOLERANCE * np.ptp(c[:, 1])  # + the CSV's rounding


def test_repository_has_no_onnx_files():
    """Graphs are made from the checkpoints, never kept beside them (they could drift)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False).stdout
    assert not [f for f in tracked.splitlines() if f.endswith(".onnx")]


def test_cache_deleted_during_a_run_is_safe(tmp_path):
    """The graph is read once: a cache emptied while a run goes on (a cleanup) does not stop it."""
    import shutil

    p = make_tiny_checkpoint(tmp_path / "m.pt", seed=7)
    sep = OnnxSeparator.from_checkpoint(p)
    raw = probe_segments("ecg")[:2, 0]
    before = sep.respiration_segments(raw)
    shutil.rmtree(cache_root() / "onnx" / cache_key(p))
    sep.release()  # the next channel opens a new session
    assert np.array_equal(sep.respiration_segments(raw), before)


def test_concurrent_export_keeps_the_other_runs_entry(tmp_path, monkeypatch):
    """Two runs export the same key: the second to finish uses the first's complete entry, never deletes it."""
    import resp_sep.onnxrun as O

    p = make_tiny_checkpoint(tmp_path / "m.pt", seed=8)
    first = graph_for(p)  # run A's entry
    folder = cache_root() / "onnx" / cache_key(p)
    meta = json.loads((folder / "meta.json").read_text())
    meta["written_by"] = "run A"  # harmless extra field: tells A's entry from an identical export by B
    entry = {"model.onnx": (folder / "model.onnx").read_bytes(), "meta.json": json.dumps(meta).encode()}
    real_export = O.export
    import shutil

    shutil.rmtree(folder)  # run B looks: nothing there, so it exports ...

    def export_while_a_finishes(*a, **k):
        out = real_export(*a, **k)
        folder.mkdir()  # ... while run A renames its whole entry into place
        for f, b in entry.items():
            (folder / f).write_bytes(b)
        return out

    monkeypatch.setattr(O, "export", export_while_a_finishes)
    g = graph_for(p)
    assert g.onnx == first.onnx and g.meta.get("written_by") == "run A"
    assert json.loads((folder / "meta.json").read_text()).get("written_by") == "run A"  # A's entry stays
    assert [x.name for x in folder.parent.iterdir() if x.name.startswith(".")] == []  # no temporaries left


def test_graph_this_runtime_cannot_load_falls_back_or_is_exit_5(tmp_path, monkeypatch):
    """A cached graph ONNX Runtime refuses (another version's, say): torch with a note under auto,
    a one-line model error naming the checkpoint under --engine onnx; never an internal error."""
    import resp_sep.onnxrun as O
    from resp_sep.errors import EXIT_MODEL
    from resp_sep.separate import Separator

    p = make_tiny_checkpoint(tmp_path / "m.pt", seed=9)
    graph_for(p)

    def refuse(*a, **k):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Unsupported model IR version: 99")

    monkeypatch.setattr(O, "_session", refuse)
    sep = load_separator(p, "ecg", "cpu")
    assert isinstance(sep, Separator) and "cannot load its graph" in sep.note
    with pytest.raises(ExportError) as e:
        load_separator(p, "ecg", "cpu", engine="onnx")
    assert e.value.exit_code == EXIT_MODEL and e.value.path == str(p) and "\n" not in str(e.value)


def test_network_the_separator_cannot_build_is_a_model_error(tmp_path):
    """An even kernel has no fast form: exit 5 naming the file (it was an internal error, exit 1)."""
    from resp_sep.errors import ModelError

    p = make_tiny_checkpoint(tmp_path / "k4.pt", kernel_size=4)
    with pytest.raises(ModelError) as e:
        load_separator(p, "ecg", "cpu")
    assert not isinstance(e.value, ExportError) and e.value.path == str(p) and "kernel" in str(e.value)


def test_cores_follow_the_affinity(monkeypatch):
    """A SLURM task or taskset given 1 core of a large node: one thread, not the node's count."""
    from resp_sep import parallel

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert parallel.cores() == 1 and parallel.budget() == 1


def test_without_onnxruntime_torch_runs_and_no_export_is_attempted(tmp_path, monkeypatch):
    """onnxruntime missing: the model check does not export (no torch import, no seconds lost per run),
    the separator runs on torch with a note, and --engine onnx is exit 5."""
    import resp_sep.onnxrun as O
    from resp_sep.checkpoint import check_model
    from resp_sep.separate import Separator

    p = make_tiny_checkpoint(tmp_path / "m.pt", seed=10)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed

    def no_export(*a, **k):
        raise AssertionError("exported without onnxruntime")

    monkeypatch.setattr(O, "export", no_export)
    assert check_model(p, ["ecg"], "cpu") == [Path(p)]
    sep = load_separator(p, "ecg", "cpu")
    assert isinstance(sep, Separator) and "onnxruntime is not installed" in sep.note
    with pytest.raises(ExportError):
        load_separator(p, "ecg", "cpu", engine="onnx")
