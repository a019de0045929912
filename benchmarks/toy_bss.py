"""Does the separator separate? A 1-D analogue of Webster & Lee's triangles & circles toy (issue 17).

The paper's toy (Table 1) mixes a triangle and a circle image post-non-linearly and shows that a
3-encoder autoencoder, trained only to reconstruct the mixture under the sparse mixing, zero
reconstruction and encoding losses, puts each shape in its own encoder (the third stays dead). This
is the same test in one dimension, small enough for one CPU core, run with the project's own
:class:`~resp_sep.model.MultiEncoderAE`, losses (:mod:`resp_sep.losses`) and training step
(:func:`resp_sep.train.training_step`).

Data (fresh samples every step, like the paper's 150,000-image set seen for 15 epochs):

* source 1: a triangular pulse, source 2: a semicircular pulse, each of height 0.5, width uniform
  in 40-60 % of the ``L`` samples and a uniform position (the paper's shapes: 40-60 % of the image,
  intensity 0.5);
* mixture ``x = minmax(conv(minmax(sigmoid(beta / 2 * (s1 + s2))), kernel))`` with ``beta = 12``
  (the authors' ``sigmoid(6 * image)``) and a 5-tap asymmetric distortion kernel, flipped for half
  the samples (their 5x5 kernel, flipped likewise);
* targets: ``minmax(s1)``, ``minmax(s2)`` (values in [0, 1], as the authors' data loader scales).

Scoring, on a fixed validation set: every encoder's masked output ``sigmoid(D(mask(z, k)))``
against every source, MSE and the mean per-sample Pearson r; sources are matched to encoders one
to one by the largest summed r (the paper matched by eye); the encoder left over is the dead one.
For scale: the MSE of an all-zero output and of the mixture itself against each source. The
ceiling: the same network and budget trained *supervised* (``--supervised``: BCE of masked output
0 against source 1 and of masked output 1 against source 2).

Run from the repository root (one thread; checkpoints and a JSON log in ``runs/toy/``;
``--resume`` continues a stopped run)::

    OMP_NUM_THREADS=1 python benchmarks/toy_bss.py --name bss --minutes 30
    OMP_NUM_THREADS=1 python benchmarks/toy_bss.py --name sup --supervised --minutes 30
    python benchmarks/toy_bss.py --table runs/toy/bss.json runs/toy/sup.json   # markdown table

Loss options default to the authors' toy recipe (``tri_and_circ_bss.yaml``: uniform sparse
mixing at 0.5, zero reconstruction 1e-2, encoding penalty 1e-2 summed over the encoders = 3e-2 as
the mean of paper Eq. 9, Adam 1e-3, weight decay 1e-6, no gradient clipping, batch 64).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: the distortion kernel (5 taps, asymmetric; flipped for half the samples)
KERNEL = np.array([1.0, 1.0, 0.0, 0.5, 1.0])
BETA = 12.0


# ------------------------------------------------------------------------------------------ data


def _minmax(a: np.ndarray) -> np.ndarray:
    lo = a.min(axis=-1, keepdims=True)
    hi = a.max(axis=-1, keepdims=True)
    return (a - lo) / np.maximum(hi - lo, 1e-12)


def pulses(rng: np.random.Generator, n: int, length: int, kind: str) -> np.ndarray:
    """``n`` pulses of height 0.5, width 40-60 % of ``length`` samples, uniform position.

    Returns
    -------
    ndarray, shape (n, length)
    """
    widths = rng.integers(int(0.4 * length), int(0.6 * length) + 1, size=n)
    starts = rng.integers(0, length - widths + 1)
    t = np.arange(length)[None, :]
    u = (t - starts[:, None] + 0.5) / widths[:, None]  # position inside the pulse, 0..1
    inside = (u > 0) & (u < 1)
    v = 2 * u - 1
    if kind == "triangle":
        y = 1 - np.abs(v)
    elif kind == "semicircle":
        y = np.sqrt(np.clip(1 - v**2, 0, None))
    else:
        raise ValueError(kind)
    return 0.5 * np.where(inside, y, 0.0)


def make_batch(rng: np.random.Generator, n: int, length: int, mixing: str = "pnl") -> tuple[np.ndarray, np.ndarray]:
    """Mixtures and their sources.

    ``mixing = "pnl"``: the paper's post-non-linear, distorted mixture (module docstring).
    ``mixing = "logit-additive"`` (a control): ``x = sigmoid(2 * beta * (s1 + s2) - beta / 2)``, no
    distortion and no rescaling, so the mixture's logit is a sum of one term per source, the form
    the decoder's output takes when its pathways do not mix.

    Returns
    -------
    x : ndarray, shape (n, length), float32
        Min-max scaled post-non-linear, distorted mixtures.
    s : ndarray, shape (n, 2, length), float32
        Min-max scaled sources (triangle, semicircle).
    """
    from scipy.ndimage import convolve1d

    s1 = pulses(rng, n, length, "triangle")
    s2 = pulses(rng, n, length, "semicircle")
    s = np.stack([_minmax(s1), _minmax(s2)], axis=1)
    if mixing == "logit-additive":
        x = 1.0 / (1.0 + np.exp(-(2 * BETA * (s1 + s2) - BETA / 2)))
        return x.astype(np.float32), s.astype(np.float32)
    if mixing != "pnl":
        raise ValueError(f"unknown mixing {mixing!r}")
    m = _minmax(1.0 / (1.0 + np.exp(-BETA / 2 * (s1 + s2))))
    flip = rng.random(n) < 0.5
    x = np.empty_like(m)
    x[~flip] = convolve1d(m[~flip], KERNEL, axis=-1, mode="constant")
    x[flip] = convolve1d(m[flip], KERNEL[::-1], axis=-1, mode="constant")
    x = _minmax(x)
    return x.astype(np.float32), s.astype(np.float32)


# --------------------------------------------------------------------------------------- scoring


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Pearson r of (n, L) arrays (0 where either row is constant)."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    return np.where(den > 1e-12, (a * b).sum(-1) / np.where(den > 1e-12, den, 1.0), 0.0)


def masked_outputs(model, x: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Every encoder's masked output and the full reconstruction, sigmoid domain.

    Returns
    -------
    outs : ndarray, shape (n, N, L)
    recon : ndarray, shape (n, L)
    """
    import torch

    model.eval()
    n_enc = model.config.n_encoders
    outs = np.empty((len(x), n_enc, x.shape[-1]), np.float32)
    recon = np.empty_like(x)
    with torch.no_grad():
        for a in range(0, len(x), batch):
            xb = torch.from_numpy(x[a:a + batch])[:, None]
            z = model.encode(xb)
            recon[a:a + batch] = torch.sigmoid(model.decode(z))[:, 0].numpy()
            for k in range(n_enc):
                outs[a:a + batch, k] = torch.sigmoid(model.decode(model.mask(z, k)))[:, 0].numpy()
    model.train()
    return outs, recon


def score(outs: np.ndarray, recon: np.ndarray, x: np.ndarray, s: np.ndarray) -> dict:
    """Per-source metrics of the masked outputs, sources matched to encoders one to one.

    Parameters
    ----------
    outs : (n, N, L) masked outputs; recon : (n, L) reconstruction; x : (n, L) mixture;
    s : (n, 2, L) sources.
    """
    n_enc, n_src = outs.shape[1], s.shape[1]
    mse = np.array([[float(np.mean((outs[:, k] - s[:, j]) ** 2)) for j in range(n_src)] for k in range(n_enc)])
    r = np.array([[float(np.mean(_pearson(outs[:, k], s[:, j]))) for j in range(n_src)] for k in range(n_enc)])
    best = max(itertools.permutations(range(n_enc), n_src), key=lambda p: sum(r[p[j], j] for j in range(n_src)))
    dead = [k for k in range(n_enc) if k not in best]
    names = ["triangle", "semicircle"]
    res = {"sources": {}, "mse": mse.tolist(), "r": r.tolist(), "match": list(best), "dead": dead,
           "recon_mse": float(np.mean((recon - x) ** 2)),
           "encoder_std": [float(np.mean(outs[:, k].std(-1))) for k in range(n_enc)]}
    for j, name in enumerate(names):
        k = best[j]
        res["sources"][name] = {
            "encoder": int(k), "mse": float(mse[k, j]), "r": float(r[k, j]), "abs_r": float(abs(r[k, j])),
            "zero_mse": float(np.mean(s[:, j] ** 2)), "mixture_mse": float(np.mean((x - s[:, j]) ** 2)),
            "mixture_r": float(np.mean(_pearson(x, s[:, j]))),
        }
    res["separated"] = all(v["abs_r"] >= 0.9 and v["mse"] * 10 <= v["zero_mse"] for v in res["sources"].values())
    return res


# -------------------------------------------------------------------------------------- training


def _supervised_terms(model, x, s):
    import torch.nn.functional as F

    z = model.encode(x)
    l1 = F.binary_cross_entropy_with_logits(model.decode(model.mask(z, 0)), s[:, 0:1])
    l2 = F.binary_cross_entropy_with_logits(model.decode(model.mask(z, 1)), s[:, 1:2])
    return l1, l2


def supervised_step(model, opt, x, s, weights=None, sup_weight: float = 1.0) -> dict:
    """One supervised step: masked output k = 0 -> source 1, k = 1 -> source 2 (BCE each).

    With ``weights`` (``--oracle``), the self-supervised losses are added: the network is steered
    to the separated solution *and* to everything the paper's losses ask for, so their value at a
    separated solution can be compared with what self-supervised training finds.
    """
    l1, l2 = _supervised_terms(model, x, s)
    loss = sup_weight * (l1 + l2)
    parts = {"sup1": float(l1.detach()), "sup2": float(l2.detach())}
    if weights is not None:
        from resp_sep.losses import total_loss

        bss, bss_parts = total_loss(model, x, weights)
        loss = loss + bss
        parts.update({k: v for k, v in bss_parts.items() if k != "total"})
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    parts["total"] = float(loss.detach())
    return parts


def build(args):
    import torch

    from resp_sep.losses import LossWeights
    from resp_sep.model import MultiEncoderAE
    from resp_sep.train import make_optimizer

    torch.manual_seed(args.seed)
    model = MultiEncoderAE(n_encoders=args.encoders, channels=args.channels, hidden=args.hidden,
                           kernel_size=args.kernel, decoder_init=args.decoder_init,
                           block_diagonal_init=args.block_diagonal_init)
    opt = make_optimizer(model, args.lr, args.weight_decay)
    weights = LossWeights(mix=args.mix, zero=args.zero, z=args.z, mix_scaling=args.mix_scaling)
    return model, opt, weights


def run(args) -> dict:
    import torch

    from resp_sep.train import training_step

    torch.set_num_threads(1)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, json_path = out / f"{args.name}.pt", out / f"{args.name}.json"
    model, opt, weights = build(args)
    x_val, s_val = make_batch(np.random.default_rng([args.seed, 999_999]), args.val, args.length, args.mixing)
    step, cpu_used, history = 0, 0.0, []
    if args.init and not args.resume:
        model.load_state_dict(torch.load(args.init, weights_only=True)["model"])
        print(f"weights from {args.init}", flush=True)
    if args.resume:
        ck = torch.load(ckpt_path, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, cpu_used, history = int(ck["step"]), float(ck["cpu_s"]), json.loads(ck["history"])
        print(f"resumed {ckpt_path} at step {step} ({cpu_used / 60:.1f} CPU min)", flush=True)
    budget = args.minutes * 60.0
    c0 = time.process_time()

    def evaluate():
        from resp_sep.losses import total_loss

        outs, recon = masked_outputs(model, x_val)
        res = score(outs, recon, x_val, s_val)
        res.update(step=step, cpu_s=cpu_used + time.process_time() - c0)
        model.eval()
        with torch.no_grad():  # the paper's objective on the validation set (eval-mode BatchNorm)
            _, parts = total_loss(model, torch.from_numpy(x_val[:256])[:, None], weights)
        model.train()
        res["val_loss"] = parts
        return res

    def save():
        hist = json.dumps(history)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "cpu_s": cpu_used + time.process_time() - c0, "history": hist}, ckpt_path)
        summary = {"args": vars(args), "history": history, "final": history[-1] if history else None}
        best = max(history, key=lambda h: min(v["abs_r"] for v in h["sources"].values())) if history else None
        summary["best_by_reference"] = best
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, json_path)

    model.train()
    win: dict[str, float] = {}
    nwin = 0
    while True:
        spent = cpu_used + time.process_time() - c0
        done = spent >= budget or (args.steps and step >= args.steps)
        if (step % args.eval_every == 0 or done) and (not history or history[-1]["step"] != step):
            res = evaluate()
            res["train"] = {k: v / max(1, nwin) for k, v in win.items()}
            history.append(res)
            win, nwin = {}, 0
            src = res["sources"]
            print(f"step {step:6d}  cpu {res['cpu_s'] / 60:5.1f} min  "
                  + "  ".join(f"{k[:4]}: enc {v['encoder']} r {v['r']:+.3f} mse {v['mse']:.4f} "
                              f"(zero {v['zero_mse']:.4f})" for k, v in src.items())
                  + f"  dead {res['dead']}  recon mse {res['recon_mse']:.5f}  "
                  + " ".join(f"{k} {v:.4g}" for k, v in res["train"].items()), flush=True)
            save()
        if done:
            break
        rng = np.random.default_rng([args.seed, step])  # data depends on (seed, step) only: exact resume
        xb, sb = make_batch(rng, args.batch, args.length, args.mixing)
        x = torch.from_numpy(xb)[:, None]
        if args.supervised or args.oracle:
            parts = supervised_step(model, opt, x, torch.from_numpy(sb), weights if args.oracle else None)
        else:
            parts = training_step(model, opt, x, weights, args.grad_clip)
        for k, v in parts.items():
            win[k] = win.get(k, 0.0) + v
        nwin += 1
        step += 1
    return json.loads(json_path.read_text())


# ------------------------------------------------------------------------------------- diagnosis


def diagnose(args) -> dict:
    """Why a trained model is (not) separated: its loss terms on the validation set, what happens
    to reconstruction and separation when every off-diagonal decoder block is zeroed (how much the
    solution relies on cross-pathway mixing, which the sparse mixing loss charges for), and the
    gradient norm of each weighted loss term."""
    import torch

    from resp_sep.losses import reconstruction_loss, sparse_mixing_loss, total_loss

    torch.set_num_threads(1)
    model, _, weights = build(args)
    model.load_state_dict(torch.load(args.diagnose, weights_only=True)["model"])
    x_val, s_val = make_batch(np.random.default_rng([args.seed, 999_999]), args.val, args.length, args.mixing)
    xt = torch.from_numpy(x_val[:256])[:, None]
    out = {"checkpoint": args.diagnose}

    def terms():
        model.eval()
        with torch.no_grad():
            _, parts = total_loss(model, xt, weights)
        model.train()
        outs, recon = masked_outputs(model, x_val)
        sc = score(outs, recon, x_val, s_val)
        return {"loss": parts, "recon_mse": sc["recon_mse"],
                "r": {k: round(v["r"], 3) for k, v in sc["sources"].items()}}

    out["as_trained"] = terms()
    # gradient of each weighted term (train mode, one validation batch)
    model.train()
    grads = {}
    n = model.config.n_encoders
    for name in ("recon", "mix", "zero", "z"):
        model.zero_grad(set_to_none=True)
        logits, z = model(xt)
        if name == "recon":
            t = reconstruction_loss(logits, xt)
        elif name == "mix":
            t = weights.mix * sparse_mixing_loss(model.mixing_layers(), n, weights.mix_scaling)
        elif name == "zero":
            from resp_sep.losses import zero_reconstruction_loss

            t = weights.zero * zero_reconstruction_loss(model, z.shape[-1])
        else:
            from resp_sep.losses import encoding_l2

            t = weights.z * encoding_l2(z, n)
        t.backward()
        grads[name] = float(torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None)))
    out["grad_norm_weighted"] = grads
    # the same weights with every off-diagonal decoder block zeroed
    model._zero_off_diagonal()  # the model's own block-diagonal initialiser, applied to the trained weights
    out["off_diagonal_zeroed"] = terms()
    print(json.dumps(out, indent=1))
    return out


# ----------------------------------------------------------------------------------------- table


def table(paths: list[str]) -> str:
    """Markdown rows of the final (and best-by-reference) evaluation of each run."""
    rows = [("| run | step | CPU min | triangle: enc, MSE, abs r | semicircle: enc, MSE, abs r | dead enc | "
            "zero-output MSE (tri / semi) | mixture MSE (tri / semi) | separated |"),
            "|---|---|---|---|---|---|---|---|---|"]
    for p in paths:
        d = json.loads(Path(p).read_text())
        for tag, h in (("final", d["final"]), ("best by reference", d.get("best_by_reference"))):
            if h is None or (tag != "final" and h["step"] == d["final"]["step"]):
                continue
            t, c = h["sources"]["triangle"], h["sources"]["semicircle"]
            rows.append(f"| {d['args']['name']} ({tag}) | {h['step']} | {h['cpu_s'] / 60:.1f} | "
                        f"{t['encoder']}, {t['mse']:.4f}, {t['abs_r']:.3f} | {c['encoder']}, {c['mse']:.4f}, "
                        f"{c['abs_r']:.3f} | {h['dead']} | {t['zero_mse']:.4f} / {c['zero_mse']:.4f} | "
                        f"{t['mixture_mse']:.4f} / {c['mixture_mse']:.4f} | {'yes' if h['separated'] else 'no'} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="bss", help="run name: runs/toy/NAME.pt and NAME.json")
    ap.add_argument("--out-dir", default=str(REPO / "runs" / "toy"))
    ap.add_argument("--minutes", type=float, default=30.0, help="CPU-time budget (process time, min)")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0 = budget only)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--length", type=int, default=256, help="samples per example")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--mixing", default="pnl", choices=["pnl", "logit-additive"],
                    help="the paper's post-non-linear mixture, or a control whose logit is additive")
    ap.add_argument("--val", type=int, default=512, help="validation examples")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--encoders", type=int, default=3)
    ap.add_argument("--channels", type=int, nargs="+", default=[24, 48, 96, 144])
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--kernel", type=int, default=7)
    ap.add_argument("--decoder-init", default="transposed")
    ap.add_argument("--block-diagonal-init", action="store_true")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-6)
    ap.add_argument("--grad-clip", type=float, default=0.0)
    ap.add_argument("--mix", type=float, default=0.5)
    ap.add_argument("--mix-scaling", default="uniform")
    ap.add_argument("--zero", type=float, default=1e-2)
    ap.add_argument("--z", type=float, default=3e-2)
    ap.add_argument("--supervised", action="store_true", help="the ceiling: train on the sources")
    ap.add_argument("--oracle", action="store_true",
                    help="the sources' supervised terms plus every self-supervised loss (a separated solution)")
    ap.add_argument("--init", default="", help="start from the weights of another run's NAME.pt")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="print a markdown table of finished runs")
    ap.add_argument("--diagnose", metavar="PT", help="loss terms, gradients and reliance on decoder mixing of a run")
    args = ap.parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    if args.diagnose:
        diagnose(args)
        return 0
    if args.length % (2 ** len(args.channels)):
        ap.error("--length must be divisible by 2 ** len(--channels)")
    res = run(args)
    f = res["final"]
    print(json.dumps({"name": args.name, "step": f["step"], "cpu_min": round(f["cpu_s"] / 60, 2),
                      "separated": f["separated"], "sources": f["sources"], "dead": f["dead"]}))
    return 0


if __name__ == "__main__":
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"
    sys.exit(main())
