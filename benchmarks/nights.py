"""Long recordings for the whole-process benchmarks: PSG-like nights of any length, format and kind.

Kinds (all 12 channels at 256 Hz: ECG, PPG, nasal, thorax and 8 EEG/EOG/EMG/leg-like fillers,
which are shifted copies of those four, so that reading only the channels used matters):

``marsh``
    The real MARSH recordings of ``../shared/data`` (21 subjects), concatenated and tiled
    (``bench_cli.build_psg``; EDF only).
``sim``
    respsep's own simulator (:func:`resp_sep.simulate.simulate`), one-hour pieces with their own
    seeds, written as they are made (a 48-h night never exists in memory). Physical ranges are
    the data's with odd digits (e.g. ``5.834222``), as real headers have.
``noisy``
    ``sim`` with three times the noise, many motion artefacts and ectopic beats: every ~15th beat
    a premature, wide, inverted complex (what makes R-peak detection and artefact correction work).

Formats: ``edf`` (EDF+ with 1-s records), ``bdf`` (BDF+, 24-bit), ``wfdb`` (format 16, one
``.dat``). Files are cached in ``$RESPSEP_BENCH_CACHE`` (default ``/tmp/respsep-bench``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

CACHE_DIR = Path(os.environ.get("RESPSEP_BENCH_CACHE", "/tmp/respsep-bench"))
FS = 256
#: (label, unit, source signal, shift in s)
CHANNELS = [
    ("EEG C3-A2", "uV", "thor", 600), ("EEG C4-A1", "uV", "nasal", 1200), ("EEG O1-A2", "uV", "ppg", 1800),
    ("EOG L", "uV", "ecg", 2400), ("EOG R", "uV", "thor", 3000), ("EMG Chin", "uV", "ecg", 3000),
    ("ECG", "mV", "ecg", 0), ("Thorax", "a.u.", "thor", 0), ("Nasal Pressure", "a.u.", "nasal", 0),
    ("Pleth", "a.u.", "ppg", 0), ("Leg L", "uV", "ppg", 2200), ("Leg R", "uV", "nasal", 1500),
]
PIECE_S = 3600


def night_path(kind: str, hours: float, fmt: str = "edf") -> Path:
    suffix = {"edf": ".edf", "bdf": ".bdf", "wfdb": ".hea"}[fmt]
    return CACHE_DIR / f"{kind}-{hours:g}h-{FS}hz-12ch{suffix}"


def _piece(kind: str, k: int) -> dict[str, np.ndarray]:
    """Hour ``k`` of a night: ECG, PPG, nasal and thorax at 256 Hz."""
    from resp_sep.simulate import simulate

    noisy = kind == "noisy"
    s = simulate(duration_s=PIECE_S, fs=FS, seed=1000 + k, noise=3.0 if noisy else 1.0, artefacts=True)
    ecg = s.ecg.copy()
    if noisy:
        ecg = _with_ectopics(ecg, np.random.default_rng(2000 + k))
    return {"ecg": ecg, "ppg": s.ppg, "nasal": s.nasal, "thor": s.thor}


def _with_ectopics(ecg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Premature, wide, inverted complexes (ventricular ectopic beats) about every 15th beat."""
    n = ecg.size
    width = int(0.12 * FS)
    t = np.arange(-width, width + 1) / FS
    shape = -1.6 * np.exp(-0.5 * (t / 0.035) ** 2) + 0.7 * np.exp(-0.5 * ((t - 0.09) / 0.05) ** 2)
    at = np.cumsum(rng.integers(int(10 * FS), int(16 * FS), size=n // int(10 * FS) + 1))
    for a in at[at < n - 2 * width - 1]:
        ecg[a:a + shape.size] += shape * rng.uniform(0.7, 1.3)
    return ecg


def _ranges(piece: dict[str, np.ndarray], bits: int) -> list[tuple[float, float]]:
    """Physical range of each channel: its data's with room, in odd digits (8 characters)."""
    out = []
    for _label, _unit, src, _shift in CHANNELS:
        x = piece[src]
        lo, hi = float(x.min()), float(x.max())
        pad = 0.6 * (hi - lo)
        out.append((float(f"{lo - pad:.6g}"[:8]), float(f"{hi + pad:.6g}"[:8])))
    return out


def _digital(piece: dict[str, np.ndarray], ranges, dmin: int, dmax: int) -> list[np.ndarray]:
    out = []
    for (_label, _unit, src, shift), (lo, hi) in zip(CHANNELS, ranges):
        x = np.roll(piece[src], -int(shift * FS) % piece[src].size)
        d = np.rint((x - lo) * ((dmax - dmin) / (hi - lo)) + dmin).clip(dmin, dmax)
        out.append(d.astype(np.int64))
    return out


def _field(s: str, n: int) -> bytes:
    return s[:n].ljust(n).encode("ascii")


def _edf_header(n_rec: int, ranges, bdf: bool) -> bytes:
    ns = len(CHANNELS) + 1  # + the EDF+ annotation signal
    dmin, dmax = (-(1 << 23), (1 << 23) - 1) if bdf else (-32768, 32767)
    ann_spr = 8 if bdf else 12  # bytes: 24 (BDF) / 24 (EDF) per record for the time-keeping TAL
    h = ((b"\xffBIOSEMI" if bdf else _field("0", 8)) + _field("X X X X", 80)
         + _field("Startdate 01-JAN-2026 X respsep-benchmark X", 80) + _field("01.01.26", 8)
         + _field("22.00.00", 8) + _field(str(256 * (ns + 1)), 8) + _field("BDF+C" if bdf else "EDF+C", 44)
         + _field(str(n_rec), 8) + _field("1", 8) + _field(str(ns), 4))
    labels = [c[0] for c in CHANNELS] + ["BDF Annotations" if bdf else "EDF Annotations"]
    units = [c[1] for c in CHANNELS] + [""]
    pmin = [f"{r[0]:g}" for r in ranges] + ["-1"]
    pmax = [f"{r[1]:g}" for r in ranges] + ["1"]
    spr = [str(FS)] * len(CHANNELS) + [str(ann_spr)]
    h += b"".join(_field(v, 16) for v in labels) + b"".join(_field("", 80) for _ in labels)
    h += b"".join(_field(v, 8) for v in units) + b"".join(_field(v, 8) for v in pmin)
    h += b"".join(_field(v, 8) for v in pmax) + b"".join(_field(str(dmin), 8) for _ in labels)
    h += b"".join(_field(str(dmax), 8) for _ in labels) + b"".join(_field("", 80) for _ in labels)
    h += b"".join(_field(v, 8) for v in spr) + b"".join(_field("", 32) for _ in labels)
    assert len(h) == 256 * (ns + 1)
    return h


def _edf_records(digital: list[np.ndarray], r0: int, bdf: bool) -> bytes:
    n_rec = digital[0].size // FS
    bps = 3 if bdf else 2
    ann_bytes = (8 if bdf else 12) * bps
    rec_bytes = len(CHANNELS) * FS * bps + ann_bytes
    out = np.zeros((n_rec, rec_bytes), np.uint8)
    for c, d in enumerate(digital):
        v = d.reshape(n_rec, FS).astype("<i4").view(np.uint8).reshape(n_rec, FS, 4)[:, :, :bps]
        out[:, c * FS * bps:(c + 1) * FS * bps] = v.reshape(n_rec, FS * bps)
    for r in range(n_rec):
        tal = f"+{r0 + r}\x14\x14\x00".encode()
        out[r, -ann_bytes:-ann_bytes + len(tal)] = np.frombuffer(tal, np.uint8)
    return out.tobytes()


def _wfdb_unit(unit: str) -> str:
    return "".join(ch for ch in unit if ch.isalnum()) or "NU"


def build_night(kind: str, hours: float, fmt: str = "edf", log=print) -> Path:
    """The night's file (built once, then cached): see the module docstring."""
    if kind == "marsh":
        if fmt != "edf":
            raise SystemExit("the MARSH night is EDF only")
        import bench_cli

        return bench_cli.build_psg(hours, log)
    path = night_path(kind, hours, fmt)
    if path.exists():
        return path
    t0 = time.perf_counter()
    n_pieces = int(np.ceil(hours * 3600 / PIECE_S))
    last_s = round(hours * 3600 - (n_pieces - 1) * PIECE_S)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = _piece(kind, 0)
    bdf = fmt == "bdf"
    if fmt in ("edf", "bdf"):
        dmin, dmax = (-(1 << 23), (1 << 23) - 1) if bdf else (-32768, 32767)
        ranges = _ranges(first, 24 if bdf else 16)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(_edf_header(round(hours * 3600), ranges, bdf))
            for k in range(n_pieces):
                piece = first if k == 0 else _piece(kind, k)
                if k == n_pieces - 1:
                    piece = {s: v[:last_s * FS] for s, v in piece.items()}
                fh.write(_edf_records(_digital(piece, ranges, dmin, dmax), k * PIECE_S, bdf))
        os.replace(tmp, path)
    elif fmt == "wfdb":
        ranges = _ranges(first, 16)
        dat = path.with_suffix(".dat")
        tmp = dat.with_name(f".{dat.name}.{os.getpid()}.tmp")
        first_vals, sums, n = None, np.zeros(len(CHANNELS), np.int64), 0
        with open(tmp, "wb") as fh:
            for k in range(n_pieces):
                piece = first if k == 0 else _piece(kind, k)
                if k == n_pieces - 1:
                    piece = {s: v[:last_s * FS] for s, v in piece.items()}
                d = np.stack(_digital(piece, ranges, -32767, 32767), axis=1)  # -32768 is WFDB's missing value
                first_vals = d[0] if first_vals is None else first_vals
                sums += d.sum(axis=0)
                n += d.shape[0]
                fh.write(d.astype("<i2").tobytes())
        os.replace(tmp, dat)
        lines = [f"{path.stem} {len(CHANNELS)} {FS} {n}"]
        for c, ((label, unit, _s, _sh), (lo, hi)) in enumerate(zip(CHANNELS, ranges)):
            gain = 65534.0 / (hi - lo)
            base = int(round(-32767 - lo * gain))
            cs = int(sums[c]) % 65536
            cs = cs - 65536 if cs > 32767 else cs
            lines.append(f"{dat.name} 16 {gain:.6f}({base})/{_wfdb_unit(unit)} 16 0 "
                         f"{int(first_vals[c])} {cs} 0 {label}")
        path.write_text("\n".join(lines) + "\n")
    else:
        raise SystemExit(f"unknown format {fmt!r}")
    log(f"built {path} ({kind}, {hours:g} h, {len(CHANNELS)} channels at {FS} Hz, "
        f"{sum(f.stat().st_size for f in (path, path.with_suffix('.dat')) if f.exists()) / 1e6:.0f} MB) "
        f"in {time.perf_counter() - t0:.1f} s")
    return path
