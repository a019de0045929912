"""Training data: segments of many recordings in an on-disk cache, split by subject.

Each recording's kept segments are min-max scaled (optionally after a percentile clip) and stored once as a float16 ``.npy`` file in a
cache folder (memory-mapped when read), keyed by the file's path, size and mtime and by every
setting that changes the segments. Corpora larger than RAM train fine: a batch reads only its rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resp_sep.errors import RespSepError
from resp_sep.preprocess import MODEL_FS, SEGMENT_LEN, load_signal, quality_filter, robust_scale, segment

CACHE_VERSION = 1


@dataclass
class RecordingSegments:
    """The cached segments of one recording.

    Attributes
    ----------
    path : str
    subject : str
        Subject id used for splitting.
    cache_file : str
        ``.npy`` file of shape (n_kept, L), float16, min-max scaled.
    starts : ndarray of int, shape (n_kept,)
        Start sample (at 200 Hz) of each kept segment.
    n_total : int
        Segments before quality control.
    dropped : dict of str to int
        Reasons and counts of dropped segments.
    label : str
        Channel used.
    """

    path: str
    subject: str
    cache_file: str
    starts: np.ndarray
    n_total: int
    dropped: dict
    label: str

    @property
    def n_kept(self) -> int:
        return int(len(self.starts))

    def load(self, mmap: bool = True) -> np.ndarray:
        """The segments, shape (n_kept, L), float16 (memory-mapped by default)."""
        return np.load(self.cache_file, mmap_mode="r" if mmap else None)


def subject_id(path: str, same_subject: list[list[str]] | None = None) -> str:
    """Subject of a recording: the file stem, merged across groups known to be one person.

    Parameters
    ----------
    path : str
    same_subject : list of list of str
        Groups of record names (stems) from the same person, e.g. ``[["marsh-0018", "marsh-0083"]]``.
    """
    stem = Path(path).name
    stem = re.sub(r"\.(edf|bdf|rec|hea)$", "", stem, flags=re.I)
    for group in same_subject or []:
        if stem in group:
            return "+".join(sorted(group))
    return stem


def _cache_key(path: str, signal: str, overrides: dict, hop: int, check_hr: bool, clip_pct: float = 0.0) -> str:
    st = os.stat(path)
    key = [CACHE_VERSION, os.path.abspath(path), st.st_size, int(st.st_mtime), signal,
           sorted(overrides.items()), hop, SEGMENT_LEN, MODEL_FS, check_hr]
    if clip_pct:  # plain min-max keeps the keys (and caches) it always had
        key.append(["robust", float(clip_pct)])
    blob = json.dumps(key)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def cache_recording(path: str, signal: str, cache_dir: str | Path, hop: int, overrides: dict | None = None,
                    same_subject: list[list[str]] | None = None, check_hr: bool = True,
                    clip_pct: float = 0.0) -> RecordingSegments:
    """Segment one recording into the cache (or reuse a cached copy).

    Parameters
    ----------
    path : str
        A recording.
    signal : {"ecg", "ppg"}
    cache_dir : path
    hop : int
        Step between segments in samples at 200 Hz.
    clip_pct : float
        Robust scaling: percent of each segment's samples clipped at either end before min-max
        scaling (:func:`resp_sep.preprocess.robust_scale`; 0 = plain min-max).

    Raises
    ------
    RespSepError
        When the recording cannot be used (the caller reports and skips it).
    """
    overrides = overrides or {}
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    from resp_sep.io import read_recording

    rec = read_recording(path)
    real = str(rec.path)
    key = _cache_key(real, signal, overrides, hop, check_hr, clip_pct)
    npy, meta_f = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if npy.exists() and meta_f.exists():
        meta = json.loads(meta_f.read_text())
        return RecordingSegments(real, subject_id(real, same_subject), str(npy), np.asarray(meta["starts"], int),
                                 meta["n_total"], meta["dropped"], meta["label"])
    sig = load_signal(rec, signal, overrides)
    segs = segment(sig.x, SEGMENT_LEN, hop)
    if len(segs) == 0:
        raise RespSepError(f"shorter than one segment ({sig.duration_s:.1f} s < {SEGMENT_LEN / MODEL_FS:.2f} s)",
                           real, exit_code=3)
    q = quality_filter(segs, MODEL_FS, kind=signal, check_heart_rate=check_hr)
    kept = np.flatnonzero(q.keep)
    scaled = robust_scale(np.asarray(segs[kept]), clip_pct).astype(np.float16)
    tmp = cache_dir / f".{key}.{os.getpid()}.tmp.npy"
    np.save(tmp, scaled)
    os.replace(tmp, npy)
    meta = {"path": real, "starts": (kept * hop).tolist(), "n_total": int(len(segs)),
            "dropped": {k: v for k, v in q.reasons.items() if v}, "label": sig.label}
    meta_f.write_text(json.dumps(meta))
    return RecordingSegments(real, subject_id(real, same_subject), str(npy), kept * hop, len(segs),
                             meta["dropped"], sig.label)


def split_subjects(subjects: list[str], val_fraction: float, seed: int,
                   val_subjects: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Deterministic subject-level train/validation split.

    Parameters
    ----------
    subjects : list of str
        Unique subject ids.
    val_fraction : float
        Fraction of subjects for validation (at least one when there are two or more subjects).
    seed : int
    val_subjects : list of str, optional
        Explicit validation subjects (overrides the random draw).

    Returns
    -------
    (train, val) : lists of subject ids, sorted
    """
    subjects = sorted(set(subjects))
    if val_subjects:
        val = sorted(s for s in subjects if s in set(val_subjects) or any(v in s.split("+") for v in val_subjects))
        return sorted(set(subjects) - set(val)), val
    if len(subjects) < 2 or val_fraction <= 0:
        return subjects, []
    rng = np.random.default_rng(seed)
    k = max(1, int(round(val_fraction * len(subjects))))
    val = sorted(rng.choice(subjects, size=k, replace=False).tolist())
    return sorted(set(subjects) - set(val)), val


@dataclass
class SegmentIndex:
    """Rows of several cached recordings addressed as one array.

    Attributes
    ----------
    recordings : list of RecordingSegments
    weights : list of float, optional
        Sampling weight of each recording's segments (expected appearances per epoch; default 1).
    """

    recordings: list[RecordingSegments] = field(default_factory=list)
    weights: list[float] | None = None

    def __post_init__(self):
        self._arrays = [r.load() for r in self.recordings]
        counts = np.array([len(a) for a in self._arrays], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        if self.weights is not None and len(self.weights) != len(self.recordings):
            raise ValueError("one weight per recording")

    @property
    def uniform(self) -> bool:
        return self.weights is None or len(set(float(w) for w in self.weights)) <= 1

    def epoch_size(self) -> int:
        """Segments drawn per epoch: the weighted count (the plain count when weights are uniform)."""
        if self.uniform:
            return len(self)
        counts = np.diff(self.offsets)
        return max(1, int(round(float(np.dot(counts, self.weights)))))

    def epoch_rows(self, rng: np.random.Generator) -> np.ndarray:
        """The rows of one epoch in training order.

        Uniform weights: a permutation of every row. Otherwise :meth:`epoch_size` rows drawn with
        replacement, each row with probability proportional to its recording's weight.
        """
        if self.uniform:
            return rng.permutation(len(self))
        p = np.repeat(np.asarray(self.weights, dtype=np.float64), np.diff(self.offsets))
        return rng.choice(len(self), size=self.epoch_size(), replace=True, p=p / p.sum())

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def batch(self, rows: np.ndarray) -> np.ndarray:
        """Gather rows (global indices) into a float32 array of shape (len(rows), L)."""
        rows = np.asarray(rows)
        rec = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.empty((len(rows), SEGMENT_LEN), dtype=np.float32)
        for r in np.unique(rec):
            sel = np.flatnonzero(rec == r)
            local = rows[sel] - self.offsets[r]
            order = np.argsort(local)  # sorted reads are kinder to a memory map
            out[sel[order]] = self._arrays[r][local[order]]
        return out
