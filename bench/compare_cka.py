"""`deepatlas compare`'s CKA pass against the published torch-cka package (Subramanian, 0.21) on
the same two models, images, batches and layers.

    python bench/compare_cka.py                              # two stock resnet18s, 3x64x64, 512 images
    python bench/compare_cka.py --a full.pt --b quarter.pt   # two deepatlas checkpoints (Fashion-MNIST test)

torch-cka computes the minibatch unbiased-HSIC CKA of the flattened maps (Nguyen et al. 2021),
recomputing HSIC(L, L) for every layer of A; deepatlas's pass computes the same estimator (each
Gram's self-HSIC once) and, in the same pass, the exact per-channel-mean CKA and the joint unit
covariance the unit matching uses. Both run in this process, interleaved, best of 3; the two
flattened-map matrices must agree to 1e-5. Writes bench/out/compare_cka.json.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a")
    ap.add_argument("--b")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from torch.utils.data import DataLoader, TensorDataset
    from torch_cka import CKA

    from deepatlas.data import load_fashion_mnist
    from deepatlas.data.base import ImageSet
    from deepatlas.models import load_checkpoint
    from deepatlas.models.checkpoint import Checkpoint
    from deepatlas.workflows.compare import similarity_pass

    torch.set_num_threads(2)
    if args.a and args.b:
        ca, cb = load_checkpoint(args.a), load_checkpoint(args.b)
        images = load_fashion_mnist("test").subset(args.images)
        layers = ["relu1", "relu2", "relu3", "relu4"]
        what = f"{Path(args.a).name} vs {Path(args.b).name} (reference CNN, Fashion-MNIST test)"
    else:
        import torchvision

        def stock(seed: int) -> Checkpoint:
            torch.manual_seed(seed)
            m = torchvision.models.resnet18(num_classes=10).eval()
            return Checkpoint(m, "resnet18", {}, {"mean": 0.0, "std": 1.0, "class_names": [str(i) for i in range(10)]},
                              None, {}, f"seed{seed}")

        ca, cb = stock(0), stock(1)
        g = torch.Generator().manual_seed(0)
        pixels = (torch.rand(args.images, 3, 64, 64, generator=g) * 255).to(torch.uint8)
        images = ImageSet.from_tensors(pixels, torch.zeros(args.images, dtype=torch.long), [str(i) for i in range(10)])
        layers = ["layer1", "layer2", "layer3", "layer4"]
        what = "two stock resnet18s (seeds 0 and 1), 3x64x64 random pixels"
    x = torch.cat([ca.normalize(b.images) for b in images.batches(args.batch)])
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=args.batch)
    ours, theirs = [], []
    flat = their_m = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        _, flat, _, _, _ = similarity_pass(ca, cb, images, layers, layers, device=torch.device("cpu"), batch_size=args.batch)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cka = CKA(ca.model, cb.model, model1_layers=layers, model2_layers=layers, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cka.compare(loader, loader)
        theirs.append(time.perf_counter() - t0)
        their_m = cka.export()["CKA"]
    assert flat is not None and their_m is not None
    ref = reference(ca.model, cb.model, loader, layers)
    diff = float((flat - ref).abs().max())
    theirs_diff = float((their_m.double() - ref).abs().max())
    res = {"what": what, "images": len(images), "batch": args.batch, "layers": layers, "deepatlas_s": min(ours),
           "torch_cka_s": min(theirs), "speedup": min(theirs) / min(ours), "deepatlas_vs_float64_reference": diff,
           "torch_cka_vs_float64_reference": theirs_diff, "cka_flattened": flat.tolist(),
           "torch_cka_matrix": their_m.tolist(), "reference": ref.tolist()}
    OUT.mkdir(exist_ok=True)
    (OUT / "compare_cka.json").write_text(json.dumps(res, indent=2))
    print(f"| {what} | {len(images)} | {min(ours):.2f} s | {min(theirs):.2f} s | {res['speedup']:.2f}x | {diff:.1e} | "
          f"{theirs_diff:.1e} |")
    if diff > 1e-6:
        raise SystemExit(f"deepatlas's flattened-map CKA differs from the float64 reference by {diff:.2e}")


def reference(model_a: torch.nn.Module, model_b: torch.nn.Module, loader: object, layers: list[str]) -> torch.Tensor:
    """torch-cka's estimator (its ``_HSIC``: unbiased HSIC on diagonal-zeroed Gram matrices,
    summed over batches) written again in float64."""
    from functools import partial

    feats: dict[tuple[str, str], torch.Tensor] = {}

    def keep(tag: str, name: str, _m: object, _i: object, out: torch.Tensor) -> None:
        feats[(tag, name)] = out.detach().flatten(1).double()

    handles = [m.get_submodule(n).register_forward_hook(partial(keep, tag, n))
               for tag, m in (("a", model_a), ("b", model_b)) for n in layers]

    def hsic(k: torch.Tensor, l: torch.Tensor) -> float:  # noqa: E741
        n = k.shape[0]
        one = torch.ones(n, 1, dtype=torch.float64)
        r = torch.trace(k @ l) + float(one.T @ k @ one @ one.T @ l @ one) / ((n - 1) * (n - 2)) - float(one.T @ k @ l @ one) * 2 / (n - 2)
        return float(r) / (n * (n - 3))

    m = len(layers)
    s = torch.zeros(m, m, 3, dtype=torch.float64)
    try:
        with torch.no_grad():
            for x, _ in loader:  # type: ignore[attr-defined]
                model_a(x)
                model_b(x)
                for i, na in enumerate(layers):
                    k = feats[("a", na)] @ feats[("a", na)].T
                    k.fill_diagonal_(0)
                    for j, nb in enumerate(layers):
                        l = feats[("b", nb)] @ feats[("b", nb)].T  # noqa: E741
                        l.fill_diagonal_(0)
                        s[i, j] += torch.tensor([hsic(k, k), hsic(k, l), hsic(l, l)], dtype=torch.float64)
    finally:
        for h in handles:
            h.remove()
    return s[:, :, 1] / (s[:, :, 0].sqrt() * s[:, :, 2].sqrt())


if __name__ == "__main__":
    main()
