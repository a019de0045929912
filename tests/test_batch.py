"""Cohort runs: sample lists, outputs named by ID, the summary table, job-array shards, alias lists, per-file lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from resp_sep.batch import (SUMMARY_COLUMNS, Item, collect_inputs, extract_batch, parse_shard, read_sample_list,
                            select_shard)
from resp_sep.errors import EXIT_INPUT, EXIT_PARTIAL, EXIT_USAGE, InputError, UsageError
from resp_sep.simulate import simulate, write_simulation


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Five short nights in a folder tree; site B names its ECG 'EKG', the others 'ECG1'."""
    d = tmp_path_factory.mktemp("cohort")
    (d / "siteA").mkdir()
    (d / "siteB").mkdir()
    paths = {}
    for i, (site, label) in enumerate([("siteA", "ECG1"), ("siteA", "ECG1"), ("siteB", "EKG"), ("siteB", "EKG"),
                                       ("siteA", "ECG1")]):
        p = d / site / f"night{i}.edf"
        write_simulation(simulate(duration_s=150, fs=128, seed=20 + i), p, ecg_label=label)
        paths[f"n{i}"] = p
    return d, paths


def _summary(folder: Path, name: str = "respsep-summary.tsv") -> list[dict]:
    lines = (folder / name).read_text().splitlines()
    head = lines[0].split("\t")
    assert tuple(head) == SUMMARY_COLUMNS
    return [dict(zip(head, ln.split("\t"))) for ln in lines[1:]]


# ------------------------------------------------------------------------------------------- lists


def test_sample_list_parsing(tmp_path):
    (tmp_path / "data").mkdir()
    lst = tmp_path / "cohort.lst"
    lst.write_text("# a comment\n\nS01\tdata/a.edf\nS02\t/abs/b.edf\tannots.xml\n  # indented comment\ndata/c.edf\n")
    items = read_sample_list(lst)
    assert [(i.id, i.path) for i in items] == [("S01", str(tmp_path / "data" / "a.edf")), ("S02", "/abs/b.edf"),
                                               ("c", str(tmp_path / "data" / "c.edf"))]
    assert items[0].origin.endswith("cohort.lst:3")
    bad = {"dup": "A\tx.edf\nA\ty.edf\n", "slash": "a/b\tx.edf\n", "nopath": "A\t\n"}
    for name, text in bad.items():
        (tmp_path / f"{name}.lst").write_text(text)
        with pytest.raises(UsageError, match=rf"{name}\.lst:\d"):
            read_sample_list(tmp_path / f"{name}.lst")
    (tmp_path / "x.edf").write_bytes(b"")
    (tmp_path / "spaces.lst").write_text("S1 x.edf\n")
    with pytest.raises(UsageError, match="tab"):
        read_sample_list(tmp_path / "spaces.lst")
    (tmp_path / "empty.lst").write_text("# nothing\n")
    with pytest.raises(InputError, match="names no recording"):
        read_sample_list(tmp_path / "empty.lst")


def test_sample_list_names_outputs_by_id_and_writes_a_summary(cohort, tmp_path, run_cli):
    d, paths = cohort
    lst = d / "cohort.lst"  # relative paths: against the list's folder, wherever respsep runs
    lst.write_text("# id\tpath\nP-001\tsiteA/night0.edf\nP-002\tsiteB/night2.edf\nP-003\tsiteA/missing.edf\n")
    out = tmp_path / "out"
    code, so, se = run_cli(["extract", lst, "--out-dir", out, "--rates", "y", "--breaths", "y",
                            "-c", "ecg=ECG1|EKG", "--window", "30"])
    assert code == EXIT_PARTIAL, se
    assert sorted(p.name for p in out.iterdir()) == [
        "P-001.breaths.csv", "P-001.rates.csv", "P-001.resp.csv", "P-002.breaths.csv", "P-002.rates.csv",
        "P-002.resp.csv", "respsep-summary.tsv"]
    rows = _summary(out)
    assert [(r["id"], r["status"], r["exit_code"]) for r in rows] == [
        ("P-001", "ok", "0"), ("P-002", "ok", "0"), ("P-003", "failed", str(EXIT_INPUT))]
    assert rows[0]["channels"].startswith("ecg=ECG1") and rows[1]["channels"].startswith("ecg=EKG")
    assert rows[0]["windows"] == "5" and 4 < float(rows[0]["median_bpm"]) < 40  # (8.8 by the true respiration)
    assert 0 <= float(rows[0]["median_confidence"]) <= 1 and float(rows[0]["seconds"]) > 0
    assert "missing.edf" in rows[2]["error"] and rows[2]["median_bpm"] == ""
    # per-file lines start with their status and name the ID
    assert any(ln.startswith("ok P-001: ") and "'ECG1, Pleth'" in ln for ln in so.splitlines()), so
    assert any(ln.startswith("error: P-003: ") for ln in se.splitlines()), se
    # a resumed run skips what is done, keeps its numbers, and updates the failed row
    (d / "siteA" / "missing.edf").symlink_to(paths["n4"])
    try:
        code, so, se = run_cli(["extract", lst, "--out-dir", out, "--rates", "y", "--breaths", "y",
                                "-c", "ecg=ECG1|EKG", "--window", "30"])
    finally:
        (d / "siteA" / "missing.edf").unlink()
    assert code == 0, se
    again = _summary(out)
    assert again[:2] == rows[:2] and again[2]["status"] == "ok" and again[2]["error"] == ""
    assert so.count("skipped") >= 2


def test_the_channel_alias_list_works_where_only_ekg_exists(cohort, tmp_path, run_cli):
    _, paths = cohort
    code, so, se = run_cli(["extract", paths["n2"], "--out", tmp_path / "r.csv", "-c", "ecg=ECG1|EKG", "--json"])
    assert code == 0, se
    (r,) = json.loads(so)["results"]
    assert r["channels"]["ecg"] == "EKG" and r["signal"] == "ecg+ppg"
    code, so, se = run_cli(["extract", paths["n2"], "--out", tmp_path / "s.csv", "-c", "ecg=ECG1|ECG2"])
    assert code == EXIT_INPUT and "none of these channels" in se and "EKG" in se
    assert not (tmp_path / "s.csv").exists()


# ------------------------------------------------------------------------------------------ shards


def test_shard_specs():
    assert parse_shard(None) is None
    assert parse_shard("1/3") == (0, 3) and parse_shard("3/3") == (2, 3)
    for bad in ("0/3", "4/3", "a/b", "3"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    with pytest.raises(UsageError, match="counts from 1.*slurm"):
        parse_shard("0/2")
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert parse_shard("slurm", env) == (2, 4)
    assert parse_shard("slurm", {**env, "SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_STEP": "2"}) == (2, 4)
    for broken in ({k: v for k, v in env.items() if k != "SLURM_ARRAY_TASK_COUNT"},
                   {**env, "SLURM_ARRAY_TASK_ID": "9"}, {**env, "SLURM_ARRAY_TASK_ID": "x"}):
        with pytest.raises(UsageError, match="--shard slurm"):
            parse_shard("slurm", broken)
    items = [Item(str(i), f"{i}.edf") for i in range(7)]
    parts = [select_shard(items, (k, 3)) for k in range(3)]
    assert sorted(i.id for p in parts for i in p) == sorted(i.id for i in items)


@pytest.mark.parametrize("base", [0, 1])
def test_two_slurm_tasks_split_a_folder_without_overlap_or_gap(cohort, tmp_path, run_cli, monkeypatch, base):
    d, paths = cohort
    seen = []
    for task in (base, base + 1):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", str(base))
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        code, so, se = run_cli(["extract", d, "--out-dir", tmp_path / "out", "--shard", "slurm",
                                "-c", "ecg=ECG1|EKG", "--json"])
        assert code == 0, se
        rep = json.loads(so)
        assert rep["shard"] == {"index": task - base, "count": 2}
        seen.append({Path(r["file"]).name for r in rep["results"]})
        rows = _summary(tmp_path / "out", f"respsep-summary.{task - base + 1}-of-2.tsv")
        assert {Path(r["path"]).name for r in rows} == seen[-1]
    assert not (seen[0] & seen[1])
    assert seen[0] | seen[1] == {p.name for p in paths.values()}
    assert len(seen[0]) == 3 and len(seen[1]) == 2


def test_collect_inputs_mixes_lists_folders_and_files(cohort, tmp_path):
    d, paths = cohort
    lst = tmp_path / "l.tsv"
    lst.write_text(f"X\t{paths['n1']}\n")
    items = collect_inputs([str(paths["n0"]), str(lst), str(d / "siteB")])
    assert [i.id for i in items] == ["night0", "X", "night2", "night3"]


# ------------------------------------------------------------------------------------ batch runner


def test_batch_library_call_and_progress(cohort, tmp_path):
    """extract_batch is the CLI's call: results, the summary path, and progress(item, done, total) while one runs."""
    d, paths = cohort
    calls = []
    res = extract_batch([str(paths["n0"]), str(paths["n1"])], out_dir=str(tmp_path / "o"), rates=True,
                        progress=lambda item, done, total: calls.append((item.id, done, total)))
    assert res.exit_code == 0 and [r["status"] for r in res.results] == ["ok", "ok"]
    assert Path(res.summary).name == "respsep-summary.tsv"
    assert (tmp_path / "o" / "night0.rates.csv").is_file()
    if calls:  # the pipeline reports progress as it processes the recording
        assert {c[0] for c in calls} <= {"night0", "night1"}
        assert all(0 <= c[1] <= (c[2] or c[1]) for c in calls)


def test_progress_is_forwarded_for_the_separator(cohort, tmp_path):
    from conftest import make_tiny_checkpoint

    _, paths = cohort
    ck = make_tiny_checkpoint(tmp_path / "tiny.pt")
    calls = []
    from resp_sep.pipeline import ExtractOptions

    res = extract_batch([str(paths["n0"])], out=str(tmp_path / "r.csv"),
                        options=ExtractOptions(method="separator", model=(ck,), signal="ecg"),
                        progress=lambda item, done, total: calls.append((done, total)))
    assert res.exit_code == 0 and calls and calls[-1][0] == calls[-1][1]
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_debug_shows_the_traceback_of_a_per_file_internal_error(cohort, tmp_path, run_cli, monkeypatch):
    import resp_sep.api

    _, paths = cohort

    def boom(*a, **k):
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr(resp_sep.api, "extract_with", boom)
    args = ["extract", paths["n0"], paths["n1"], "--out-dir", tmp_path / "o"]
    code, _, se = run_cli(args)
    assert code == EXIT_PARTIAL and "planted bug" in se and "Traceback" not in se and "--debug" in se
    code, _, se = run_cli(["--debug", *args])
    assert code == EXIT_PARTIAL and se.count("Traceback (most recent call last)") == 2
    assert "ZeroDivisionError: planted bug" in se and "def boom" not in se  # the traceback, not the source


def test_a_newline_in_a_file_name_does_not_split_the_status_line(tmp_path, run_cli):
    src = tmp_path / "in"
    src.mkdir()
    odd = src / "bad\nname [x].edf"
    write_simulation(simulate(duration_s=90, fs=128, seed=3), odd)
    (src / "broken\tone.edf").write_bytes(b"0       " + b"z" * 300)
    code, so, se = run_cli(["extract", src, "--out-dir", tmp_path / "out"])
    assert code == EXIT_PARTIAL
    ok = [ln for ln in so.splitlines() if ln.startswith("ok ")]
    assert len(ok) == 1 and "bad\\nname [x].edf" in ok[0], so
    errs = [ln for ln in se.splitlines() if ln.startswith("error:")]
    assert len(errs) == 1 and "broken\\tone.edf" in errs[0] and len(se.strip().splitlines()) == 1, se
    rows = (tmp_path / "out" / "respsep-summary.tsv").read_text().splitlines()
    assert len(rows) == 3 and all(len(r.split("\t")) == len(SUMMARY_COLUMNS) for r in rows)


def test_json_and_quiet_print_no_progress_or_status_lines(cohort, tmp_path, run_cli):
    _, paths = cohort
    code, so, se = run_cli(["extract", paths["n0"], "--out", tmp_path / "a.csv", "--quiet"])
    assert code == 0 and so == "" and se == ""
    code, so, se = run_cli(["extract", paths["n0"], "--out", tmp_path / "b.csv", "--json"])
    assert code == 0 and se == "" and json.loads(so)["ok"] == 1


def test_usage_errors_before_any_work(cohort, tmp_path, run_cli):
    d, _ = cohort
    lst = tmp_path / "c.lst"
    lst.write_text("A\tx.edf\n")
    for args, text in ((["--shard", "0/2"], "counts from 1"), (["--window", "5"], "--window"),
                       (["--out", tmp_path / "x.csv"], "--out-dir")):
        code, _, se = run_cli(["extract", lst, *args] + ([] if "--out" in args else ["--out-dir", tmp_path / "o"]))
        assert code == EXIT_USAGE and text in se, se
    assert not (tmp_path / "o").exists()
    os.environ.pop("SLURM_ARRAY_TASK_ID", None)
    code, _, se = run_cli(["extract", d, "--out-dir", tmp_path / "o", "--shard", "slurm"])
    assert code == EXIT_USAGE and "SLURM_ARRAY_TASK_ID" in se


def test_a_text_file_is_not_taken_for_a_sample_list(tmp_path, run_cli):
    """Only .lst/.list/.tsv are sample lists: notes.txt given as a recording is refused as one."""
    (tmp_path / "notes.txt").write_text("ID\tnight.edf\n")
    code, _, se = run_cli(["extract", tmp_path / "notes.txt", "--out", tmp_path / "r.csv"])
    assert code == EXIT_INPUT and "notes.txt" in se and "unsupported" in se


def test_an_interrupted_batch_leaves_an_up_to_date_summary(cohort, tmp_path, monkeypatch):
    import resp_sep.api
    from resp_sep.batch import BatchInterrupted

    _, paths = cohort
    real, calls = resp_sep.api.extract_with, []

    def stop_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(resp_sep.api, "extract_with", stop_on_second)
    with pytest.raises(BatchInterrupted) as ei:
        extract_batch([str(paths[k]) for k in ("n0", "n1", "n2")], out_dir=str(tmp_path / "o"))
    res = ei.value.result
    assert res.interrupted and res.exit_code == 130 and res.not_done == 2
    assert [r["status"] for r in _summary(tmp_path / "o")] == ["ok", "interrupted", "interrupted"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["night0.resp.csv", "respsep-summary.tsv"]
