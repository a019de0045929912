"""Where the default method's time goes: wall and CPU time (all threads) at each stage of one extraction.

    python benchmarks/bench_stages.py /tmp/respsep-bench/psg-8h-256hz-12ch.edf [--method fusion]

Prints one line per stage boundary: seconds since start (wall), process CPU seconds (every thread),
resident memory (MB), and the stage. The ECG and the PPG run in two threads, so their lines
interleave; fusion and writing follow. The PSG-like EDFs are the ones ``bench_cli.py`` builds.
"""

from __future__ import annotations

import argparse
import time

T0 = time.perf_counter()


def _rss_mb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return 0


def _mark(what: str) -> None:
    print(f"{time.perf_counter() - T0:7.2f} s wall {time.process_time():7.2f} s CPU {_rss_mb():5d} MB  {what}",
          flush=True)


def _wrap(mod, name: str) -> None:
    f = getattr(mod, name)

    def timed(*a, **k):
        _mark(f"start {mod.__name__.rsplit('.', 1)[-1]}.{name}")
        try:
            return f(*a, **k)
        finally:
            _mark(f"end   {mod.__name__.rsplit('.', 1)[-1]}.{name}")

    setattr(mod, name, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recording")
    ap.add_argument("--method", default="fusion")
    ap.add_argument("--out", default="/tmp/respsep-bench-stages.csv")
    args = ap.parse_args()
    _mark("python started")
    import scipy.signal  # noqa: F401 - timed on its own

    _mark("imported scipy.signal")
    import resp_sep.beats as B
    import resp_sep.chunks as C
    import resp_sep.fusion as F
    import resp_sep.api as A
    import resp_sep.outputs as O
    import resp_sep.pipeline as P
    import resp_sep.writers as W

    for mod, name in ((B, "ecg_beats"), (B, "ppg_beats"), (C, "scan"), (B, "fixpeaks_kubios"), (P, "compute_sources"),
                      (B, "_feet"), (F, "fuse"), (F, "_fuse_windows"), (O, "at_rate"), (W, "write_csv")):
        _wrap(mod, name)
    A.extract_file(args.recording, method=args.method).save(args.out)
    _mark("done")


if __name__ == "__main__":
    main()
