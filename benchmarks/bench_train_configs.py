"""CPU cost of one training step for the architecture variants of docs/experiments.md (issue 10 (f)).

Measures **process CPU time** (not wall time) of a full training step (:func:`resp_sep.losses.total_loss`
with all four terms, backward, gradient clipping, Adam) at one thread, batch 16, so the numbers hold
on a core shared with other jobs. Random inputs (speed does not depend on the data). A shorter
segment for the same 61.44 s stands for a lower internal sampling rate (the model is fully
convolutional: 6,144 samples = 100 Hz, 3,072 = 50 Hz).

    .venv/bin/python benchmarks/bench_train_configs.py [--steps 8]

Prints, per variant: median CPU ms per step over ``--steps`` timed steps (after 2 untimed), segments
per CPU second, and the speed-up over the shipped architecture (8 stages, half widths, 200 Hz).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HALF8 = [16, 16, 32, 32, 64, 64, 128, 128]
HALF6 = [16, 16, 32, 32, 64, 64]
VARIANTS = [
    ("shipped: 8 stages, half widths, N=8, hidden 64, 200 Hz", dict(channels=HALF8), 12_288),
    ("6 stages, half widths, N=8, hidden 64, 200 Hz", dict(channels=HALF6), 12_288),
    ("6 stages, N=4 (2x wider encoders)", dict(channels=HALF6, n_encoders=4), 12_288),
    ("6 stages, hidden 256 (follow-up bundle)", dict(channels=HALF6, hidden=256), 12_288),
    ("6 stages at 100 Hz (6,144 samples)", dict(channels=HALF6), 6_144),
    ("5 stages at 100 Hz (same latent rate as 6 at 200 Hz)", dict(channels=HALF6[:5]), 6_144),
    ("5 stages at 50 Hz (3,072 samples)", dict(channels=HALF6[:5]), 3_072),
]


def step_cpu_ms(model_kw: dict, length: int, steps: int, batch: int = 16) -> float:
    import torch

    from resp_sep.losses import LossWeights, total_loss
    from resp_sep.model import MultiEncoderAE

    torch.manual_seed(0)
    model = MultiEncoderAE(**{"n_encoders": 8, "hidden": 64, "kernel_size": 7, **model_kw})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    w = LossWeights(mix=1e-3, zero=1e-2, z=1e-2, mix_scaling="position")
    x = torch.rand(batch, 1, length)
    times = []
    for i in range(steps + 2):
        c0 = time.process_time()
        loss, _ = total_loss(model, x, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        if i >= 2:
            times.append(time.process_time() - c0)
    return 1000 * statistics.median(times)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print("| variant | CPU ms / step (batch 16) | segments / CPU s | speed-up |")
    print("|---|---|---|---|")
    base = None
    for name, kw, length in VARIANTS:
        ms = step_cpu_ms(kw, length, a.steps)
        base = base or ms
        print(f"| {name} | {ms:.0f} | {16 / ms * 1000:.1f} | {base / ms:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
