"""What ``--influence-top-k K`` keeps of the neuron->neuron influence (docs/ARCHITECTURE.md).

ResNet-18 (:class:`deepatlas.models.ResNet18`) trained one epoch on 2,000 Fashion-MNIST training
images; the between-layer influential scores averaged over 100 test images (what ``ingest``
stores), then, for each K: the edges kept and the share of each upper unit's sum of |score| that
its K strongest lower units carry (mean, 10th percentile, smallest). About 2 minutes on 2 cores.

    python bench/influence_topk.py
"""

from __future__ import annotations

import numpy as np
import torch

from deepatlas.data import load_fashion_mnist
from deepatlas.explain.aggregate import layer_influence
from deepatlas.ingest.capture import ActivationRecorder
from deepatlas.models import ResNet18, train_model

MEAN, STD = 0.286, 0.353


def main() -> None:
    torch.manual_seed(0)
    train = load_fashion_mnist("train").subset(2000)
    test = load_fashion_mnist("test").subset(500)
    model = ResNet18()
    train_model(model, train, epochs=1, seed=0, mean=MEAN, std=STD)
    model.eval()

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x - MEAN) / STD

    layers = [s.name for s in ActivationRecorder(model, None, example=norm(test.images[:2])).layers]
    between = layer_influence(model, test, layers, normalize=norm, samples=100)
    total = sum(m.numel() for m in between.values())
    print(f"{len(between)} layer pairs, {total:,} neuron->neuron pairs")
    print("| K | edges kept | mean share kept | 10th percentile | smallest |\n|---|---|---|---|---|")
    for k in (8, 16, 32, 64):
        kept, shares = 0, []
        for m in between.values():
            a = m.abs().numpy()  # (lower units, upper units)
            kk = min(k, a.shape[0])
            top = -np.sort(-a, axis=0)[:kk]
            s = a.sum(0)
            shares.append(top.sum(0)[s > 0] / s[s > 0])
            kept += kk * a.shape[1]
        sh = np.concatenate(shares)
        print(f"| {k} | {kept:,} ({kept / total:.1%}) | {sh.mean():.3f} | {np.quantile(sh, 0.1):.3f} | {sh.min():.3f} |")


if __name__ == "__main__":
    main()
