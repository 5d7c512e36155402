"""Train a stock torchvision model briefly on the photo-patch colour data set (docs/REPRODUCTION.md,
"A colour data set and a stock torchvision model"): writes the ImageFolder tree, trains, saves
the weights as .safetensors with a sidecar JSON, and prints the test accuracy.

    python scripts/photo_patches_model.py OUT_DIR [--arch resnet18] [--size 64] [--epochs 6]

Then, as any user would:

    deepatlas ingest --model torchvision:resnet18 --weights OUT_DIR/resnet18.safetensors \
        --data imagefolder:OUT_DIR/patches/test --split all --run photo-resnet18
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from deepatlas.data.formats import load_data
from deepatlas.data.photo_patches import write_photo_patches

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet's, recorded in the sidecar


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--per-class", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    root = write_photo_patches(args.out / "patches", per_class=args.per_class, size=args.size, seed=args.seed)
    shape = (3, args.size, args.size)
    train = load_data(f"imagefolder:{root / 'train'}", "all", input_shape=shape)
    test = load_data(f"imagefolder:{root / 'test'}", "all", input_shape=shape)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    net = getattr(torchvision.models, args.arch)(weights=None, num_classes=len(train.class_names))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(train))
        for s in range(0, len(train), 32):
            idx = order[s : s + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(net((train.images[idx] - mean) / std), train.labels[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            pred = torch.cat([net((test.images[s : s + 200] - mean) / std).argmax(1) for s in range(0, len(test), 200)])
        print(f"epoch {epoch + 1}: test accuracy {float((pred == test.labels).float().mean()):.3f}", flush=True)
    weights = args.out / f"{args.arch}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    (args.out / f"{args.arch}.json").write_text(json.dumps({
        "class_names": list(train.class_names), "input_shape": list(shape), "mean": MEAN, "std": STD}))
    print(json.dumps({"weights": str(weights), "train_images": len(train), "test_images": len(test),
                      "train_seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
