"""How far CPU bf16 autocast moves the separator's output (why it is not shipped).

For the first ``--records`` MARSH recordings (``../shared/data/marsh-edf``) and both shipped
models, the respiration is extracted twice - the shipped fp32 fast path, then the same network
under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (oneDNN bf16 convolutions, about 2x faster
on CPUs with AVX512-BF16) - and compared: largest waveform difference relative to the waveform's
range, correlation, and the largest difference of breaths/min over 60-s windows.

    python benchmarks/bf16_accuracy.py [--records 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import torch

    from resp_sep.preprocess import MODEL_FS, load_signal
    from resp_sep.rate import breathing_rate
    from resp_sep.separate import Separator

    torch.set_num_threads(a.threads)
    files = sorted((C.REPO.parent / "shared" / "data" / "marsh-edf").glob("*.edf"))[: a.records]
    if not files:
        raise SystemExit("no MARSH recordings in ../shared/data/marsh-edf")
    rows = []
    for kind in ("ecg", "ppg"):
        sep = Separator.from_checkpoint(None, kind, "cpu")
        net = sep._fast_net()
        for f in files:
            x = load_signal(str(f), kind).x
            a32 = sep.extract(x, MODEL_FS)
            fp32_logits = sep._fast_logits

            def bf16_logits(z, _net=net):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return _net(z)

            sep._fast_logits = bf16_logits
            b16 = sep.extract(x, MODEL_FS)
            sep._fast_logits = fp32_logits
            ra, rb = breathing_rate(a32, 25.0).bpm, breathing_rate(b16, 25.0).bpm
            ok = np.isfinite(ra) & np.isfinite(rb)
            rows.append([kind, f.stem, C.fmt(float(np.abs(a32 - b16).max() / np.ptp(a32))),
                         f"{np.corrcoef(a32, b16)[0, 1]:.4f}",
                         C.fmt(float(np.abs(ra - rb)[ok].max())) if ok.any() else None,
                         f"{int(ok.sum())}/{ra.size}", str(int((np.isfinite(ra) != np.isfinite(rb)).sum()))])
    C.print_table("CPU bf16 autocast vs fp32 (shipped models, MARSH)",
                  ["model", "recording", "max |diff| / range", "r", "max |d breaths/min|", "windows", "scored differently"],
                  rows, f"{a.threads} thread(s); 60-s windows of resp_sep.rate.breathing_rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
