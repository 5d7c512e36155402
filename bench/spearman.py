"""Spearman co-activation (`ingest --correlation spearman`) against Pearson and against exact ranks.

    python bench/spearman.py --model fashion-cnn.pt            # a deepatlas checkpoint, Fashion-MNIST test
    python bench/spearman.py --model fashion-cnn.pt --images 4000

In one process, on the same model, images and batches: the co-activation pass with Pearson r
and with Spearman's rho (best of ``--repeats``; the ratio is the cost of the extra ranking
pass), then the exact rho from scipy's ``spearmanr`` on every node value held in memory (the
reference: only possible because the bench keeps N x M values), and per class the overlap of
the top-10 hidden units by Pearson and by Spearman. Writes bench/out/spearman.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a deepatlas checkpoint (e.g. from `deepatlas train`)")
    ap.add_argument("--images", type=int, default=10_000, help="Fashion-MNIST test images")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from scipy.stats import spearmanr

    from deepatlas.data import load_fashion_mnist
    from deepatlas.ingest.capture import ActivationRecorder
    from deepatlas.ingest.coactivation import compute_coactivation
    from deepatlas.models import load_checkpoint

    torch.set_num_threads(2)
    ckpt = load_checkpoint(args.model)
    data = load_fashion_mnist("test").subset(args.images)
    runs: dict[str, list[float]] = {"pearson": [], "spearman": []}
    res = {}
    for _ in range(args.repeats):
        for kind in runs:
            t0 = time.perf_counter()
            res[kind] = compute_coactivation(ckpt.model, data, batch_size=args.batch, normalize=ckpt.normalize,
                                             correlation=kind, pixel_grid="off")
            runs[kind].append(time.perf_counter() - t0)
    pearson, spearman = res["pearson"], res["spearman"]
    assert pearson.units.r is not None and spearman.units.r is not None
    # exact reference: every node value in memory, ranked by scipy
    model = ckpt.model.eval()
    rec = ActivationRecorder(model, [s.name for s in spearman.layers], example=ckpt.normalize(data.take([0, 1])))
    acts, probs = [], []
    with torch.no_grad():
        for b in data.batches(args.batch):
            a, out = rec.record(ckpt.normalize(b.images))
            acts.append(a)
            probs.append(out.softmax(1))
    nodes = torch.cat([torch.cat(acts), torch.cat(probs)], 1).double().numpy()
    live = nodes.std(0) > 1e-9
    exact = spearmanr(nodes[:, live]).statistic
    ours = spearman.units.r.numpy()[np.ix_(live, live)]
    err = float(np.abs(ours - exact).max())
    hidden = spearman.n_hidden
    overlap = {}
    for c, name in enumerate(data.class_names):
        col = hidden + c
        top = {}
        for kind, r in (("pearson", pearson.units.r.numpy()), ("spearman", spearman.units.r.numpy())):
            order = np.argsort(-r[:hidden, col], kind="stable")
            top[kind] = set(order[:10].tolist())
        overlap[name] = len(top["pearson"] & top["spearman"])
    diff = np.abs(spearman.units.r.numpy() - pearson.units.r.numpy())
    result = {
        "model": Path(args.model).name, "images": len(data), "nodes": int(nodes.shape[1]), "live": int(live.sum()),
        "seconds_pearson": min(runs["pearson"]), "seconds_spearman": min(runs["spearman"]),
        "cost_ratio": min(runs["spearman"]) / min(runs["pearson"]),
        "rank_bins": spearman.rank_bins, "stated_bound": spearman.rank_error_bound, "max_error_vs_scipy": err,
        "top10_overlap_per_class": overlap, "max_abs_rho_minus_r": float(diff.max()),
        "median_abs_rho_minus_r": float(np.median(diff)),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "spearman.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
