"""Stock architectures end to end with default flags: peak memory and time per stage, next to
what `deepatlas inspect` promised.

    python bench/stock_models.py                 # the nine models, 100 colour images each
    python bench/stock_models.py --images 30 --models densenet121,efficientnet_b0
    python bench/stock_models.py --images 3000 --models resnet18 --correlation spearman   # the rank pass's cost

For each model: seeded random weights saved as .safetensors (a ViT's zero-initialised head gets
small random weights, else every class output is equal and no gradient flows), then
``deepatlas inspect --json`` (the plan) and ``deepatlas ingest --json`` under ``/usr/bin/time -v``
(the process's real peak RSS), each in a fresh process, over an ImageFolder of real colour
photographs (scikit-image's, cut into patches by ``deepatlas.data.photo_patches``). Needs the
local Neo4j (``deepatlas db start``). Writes bench/out/stock_models.json and prints a Markdown
table: measured peak against the estimate (the goal: within 1.5x) and against the budget
(peak <= budget + the model's own forward pass + 1 GB).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
DEEPATLAS = [sys.executable, "-m", "deepatlas"]

#: model -> input size (ViT-B/16's positional embedding is for 224 px)
MODELS = {
    "resnet18": 64, "resnet50": 64, "densenet121": 64, "efficientnet_b0": 64, "mobilenet_v3_small": 64,
    "regnet_y_400mf": 64, "convnext_tiny": 64, "vit_b_16": 224, "timm:resnet18": 64,
}

TIMM_FACTORY = '''
import timm

def build(num_classes=8):
    return timm.create_model("resnet18", pretrained=False, num_classes=num_classes)
'''


def _weights(name: str, classes: int) -> tuple[str, Path]:
    """The --model spec and a seeded random .safetensors for it."""
    import torch
    import torchvision
    from safetensors.torch import save_file

    OUT.mkdir(exist_ok=True)
    torch.manual_seed(0)
    if name.startswith("timm:"):
        factory = OUT / "timm_factory.py"
        factory.write_text(TIMM_FACTORY)
        import timm

        model = timm.create_model(name.split(":", 1)[1], pretrained=False, num_classes=classes)
        spec = f"{factory}:build"
    else:
        model = getattr(torchvision.models, name)(num_classes=classes)
        spec = f"torchvision:{name}"
    if name == "vit_b_16":
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    path = OUT / f"stock-{name.replace(':', '-')}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return spec, path


def _photos(images: int) -> tuple[Path, int]:
    from deepatlas.data.photo_patches import PHOTOS, write_photo_patches

    per_class = -(-images // len(PHOTOS))
    root = OUT / f"photos-{per_class}"
    if not (root / "train").is_dir():
        write_photo_patches(root, per_class=per_class, test_per_class=2, size=64)
    return root, len(PHOTOS)


def _peak_kb(stderr: str) -> int:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(m.group(1)) if m else 0


def run_one(name: str, images: int, memory_mb: float, correlation: str = "pearson") -> dict[str, Any]:
    root, classes = _photos(images)
    spec, weights = _weights(name, classes)
    size = MODELS[name]
    flags = ["--model", spec, "--weights", str(weights), "--num-classes", str(classes), "--input-size", f"3x{size}x{size}",
             "--correlation", correlation]
    inspect = subprocess.run([*DEEPATLAS, "inspect", *flags, "--images", str(images), "--memory-mb", str(memory_mb), "--json"],
                             capture_output=True, text=True, check=False)
    if inspect.returncode:
        return {"model": name, "error": "inspect: " + (inspect.stderr.strip().splitlines() or ["?"])[-1]}
    est = json.loads(inspect.stdout)["estimate"]
    t0 = time.perf_counter()
    ingest = subprocess.run(["/usr/bin/time", "-v", *DEEPATLAS, "ingest", *flags, "--data", f"imagefolder:{root}", "--split",
                             "train", "--limit", str(images), "--run", f"stock-{name.replace(':', '-')}", "--replace",
                             "--restart", "--memory-mb", str(memory_mb), "--json"], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    peak = _peak_kb(ingest.stderr) / 1024
    if ingest.returncode:
        lines = [x for x in ingest.stderr.splitlines() if x.startswith("error")]
        return {"model": name, "error": "ingest: " + (lines[-1] if lines else ingest.stderr[-300:]), "peak_mb": peak}
    rep = json.loads(ingest.stdout)
    forward_mb = est["memory_mb"].get("forward+stats", 0.0) - est["comoment_mb"] - est["pixel_mb"]
    return {
        "model": name, "correlation": correlation, "input": size, "images": images, "units": est["units"], "batch_size": rep["batch_size"],
        "estimate_peak_mb": est["peak_mb"], "peak_mb": round(peak, 1), "ratio": round(peak / est["peak_mb"], 2),
        "baseline_mb": rep["memory_mb"].get("load"), "budget_mb": memory_mb, "forward_mb": round(forward_mb, 1),
        "within_budget": peak <= rep["memory_mb"].get("load", 0.0) + memory_mb + forward_mb + 1024,
        "wall_s": round(wall, 1), "seconds": {k: round(v, 1) for k, v in rep["seconds"].items()},
        "estimate_seconds": est["seconds"], "memory_mb": rep["memory_mb"], "estimate_memory_mb": est["memory_mb"],
        "edges": rep["edges"], "skipped": rep["skipped"], "pairs": rep["pairs"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--memory-mb", type=float, default=2048.0)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--correlation", default="pearson", help="pearson, spearman, or both (each model twice)")
    args = parser.parse_args(argv)
    kinds = ["pearson", "spearman"] if args.correlation == "both" else [args.correlation]
    rows = []
    for name, kind in ((n, k) for n in args.models.split(",") for k in kinds):
        row = run_one(name, args.images, args.memory_mb, kind)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k in ("model", "correlation", "peak_mb", "estimate_peak_mb", "ratio", "wall_s",
                                                                 "error")}), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / f"stock_models{'' if kinds == ['pearson'] else '-' + args.correlation}.json").write_text(json.dumps(rows, indent=2))
    print("\n| model | correlation | input | units | batch | peak RSS | inspect's estimate | measured / estimate | within budget | "
          "wall | forward+stats | gradient | write | edges |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | | | | | {r.get('peak_mb', 0):.0f} MB | | | | | | | | {r['error']} |")
            continue
        s = r["seconds"]
        edges = sum(v for k, v in r["edges"].items() if k != "IN_LAYER")
        print(f"| {r['model']} | {r['correlation']} | {r['input']} px | {r['units']:,} | {r['batch_size']} | {r['peak_mb']:,.0f} MB | "
              f"{r['estimate_peak_mb']:,.0f} MB | {r['ratio']:.2f} | {'yes' if r['within_budget'] else 'NO'} | {r['wall_s']:.0f} s | "
              f"{s.get('forward+stats', 0):.1f} s | {s.get('gradient', 0):.1f} s | {s.get('write', 0):.1f} s | {edges:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
