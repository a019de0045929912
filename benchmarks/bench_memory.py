"""Peak memory of extraction against night length (1, 4, 8, 16 h): it must stay well under 1 GB.

Each length runs in a fresh process that does what ``respsep extract`` does with the signal once
it is read: :meth:`resp_sep.separate.Separator.extract` of a simulated ECG at 256 Hz (resampling
to 200 Hz, the model over half-overlapping segments, overlap-add, resampling to 25 Hz), with a
half-width model of random weights on the CPU. Its peak RSS (``ru_maxrss`` of that process) is
compared with a process that does everything but the night (Python, torch, the model, one batch
of 16 segments through it: the fixed floor).

What grows with the night, per 8 h (n = 5.76 M samples at 200 Hz):

* the input ECG the caller holds: float32 at 256 Hz, 29.5 MB;
* resampling to 200 Hz: a float64 copy of the input (59 MB) and the float64 output (46 MB);
* overlap-add: two float64 accumulators at 200 Hz (2 x 46 MB) and their quotient (46 MB);
* resampling to 25 Hz (float64 input, 5.8 MB output) and the float32 result (2.9 MB).

The model's own memory (weights, activations of one batch of 16 segments: ~100 MB for the
half-width model) does not depend on the length: segments are read from a strided view batch by
batch. So peak RSS = floor + about 25-35 MB per hour of recording.

Run from the repository root::

    python benchmarks/bench_memory.py            # 1, 4, 8, 16 h
    python benchmarks/bench_memory.py --quick    # 1 and 4 h
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C


def child(spec: dict) -> None:
    import numpy as np
    import torch

    from resp_sep.preprocess import SEGMENT_LEN
    from resp_sep.separate import Separator

    torch.set_num_threads(spec["threads"])
    model = C.random_model(spec["model_config"])
    sep = Separator(model, 2, torch.device("cpu"))
    res = {}
    # one batch through the model first: its buffers are part of the fixed floor
    sep.respiration_segments(np.random.default_rng(0).standard_normal((16, SEGMENT_LEN)))
    if spec["hours"] > 0:
        ecg = C.night_ecg(spec["hours"])
        t0 = time.perf_counter()
        y = sep.extract(ecg, C.NIGHT_FS)
        res.update(seconds=time.perf_counter() - t0, out_samples=len(y), in_mb=ecg.nbytes / 1e6)
    C.child_result(res)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[1, 4, 8, 16], help="night lengths (h)")
    ap.add_argument("--model-config", choices=list(C.MODEL_CONFIGS), default="half")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="1 and 4 h only")
    a = C.parse_args_or_run_child(ap, argv, child)
    if a is None:
        return 0
    if a.quick:
        a.hours = [1, 4]
    for h in a.hours:
        C.night_ecg(h)
    info = C.machine_info(a.threads)
    C.print_info(info, "before")
    spec = {"hours": 0, "threads": a.threads, "model_config": a.model_config}
    _, floor = C.run_child(__file__, spec)
    rows = [["floor (imports, model, one batch; no night)", None, None, None, C.fmt(floor), None, None]]
    out = [{"hours": 0, "peak_rss_mb": floor}]
    prev = None
    for h in a.hours:
        print(f"-> {h:g} h (load {C.load_average()})", flush=True)
        r, rss = C.run_child(__file__, {**spec, "hours": h})
        r.update(hours=h, peak_rss_mb=rss)
        out.append(r)
        acc_mb = 2 * h * 3600 * 200 * 8 / 2**20  # the two float64 accumulators at 200 Hz
        growth = (rss - floor) / h
        slope = None if prev is None else (rss - prev[1]) / (h - prev[0])
        rows.append([f"{h:g} h", C.fmt(r.get("in_mb", 0) / 1.048576), C.fmt(acc_mb), C.fmt(r.get("seconds")),
                     C.fmt(rss), C.fmt(growth), C.fmt(slope)])
        prev = (h, rss)
    after = C.load_average()
    C.print_table("Peak RSS of extraction vs night length",
                  ["night", "input MiB (f32 @256 Hz)", "accumulators MiB", "extract s", "peak RSS MiB",
                   "(peak - floor) / h", "MiB per extra h"], rows,
                  f"{a.model_config}-width model, CPU, {a.threads} threads; each row a fresh process. "
                  f"Load average before {info['load_avg_1_5_15']}, after {after}.")
    C.save_json(a.json, {"args": vars(a), "machine": info, "load_after": after, "results": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
