"""ImageNet-sized data: peak memory flat in the number of images, throughput against a plain
DataLoader + forward loop, two processes under torchrun against one, and a kill -9 mid-ingest
continued with --resume.

    python bench/streaming.py                      # resnet18 at 1k/4k/16k, resnet50 at 1k/4k
    python bench/streaming.py --sizes 1000,4000 --models resnet18 --skip-torchrun

The data: an ImageNet-shaped folder (100 synset folders of 224 px JPEGs cut from real
photographs, ``deepatlas.data.photo_patches.write_imagenet_shaped``, with its
LOC_synset_mapping.txt), read as ``--data imagenet:DIR``. Every ingest runs in a fresh process
under ``/usr/bin/time -v`` with ``--edges coactivation`` (the streaming pass is what is
measured). Throughput: images over the ingest's forward+stats seconds, against
``torchvision.datasets.ImageFolder`` + the same resize + a DataLoader with the same workers +
the model's forward pass under no_grad, over the same files, in its own process. Needs the local
Neo4j (``deepatlas db start``). Writes bench/out/streaming.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
CLI = [sys.executable, "-m", "deepatlas"]

PLAIN = r"""
import sys, time, json, torch, torchvision
from torchvision import transforms
root, name, n, workers, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.manual_seed(0)
model = getattr(torchvision.models, name)(num_classes=100).eval()
mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
tf = transforms.Compose([transforms.Resize((224, 224)), transforms.PILToTensor()])
data = torchvision.datasets.ImageFolder(root, transform=tf)
sub = torch.utils.data.Subset(data, list(range(n)))
loader = torch.utils.data.DataLoader(sub, batch_size=batch, num_workers=workers, shuffle=False)
t0 = time.perf_counter()
seen = 0
with torch.no_grad():
    for x, y in loader:
        model((x.float() / 255 - mean) / std)
        seen += len(x)
print(json.dumps({"images": seen, "seconds": time.perf_counter() - t0}))
"""


def _folder(images: int) -> Path:
    from deepatlas.data.photo_patches import write_imagenet_shaped

    per_class = -(-images // 100)
    root = OUT / f"imagenet-shaped-{per_class}"
    if not (root / "LOC_synset_mapping.txt").exists():
        t0 = time.perf_counter()
        write_imagenet_shaped(root, classes=100, per_class=per_class)
        print(f"wrote {100 * per_class:,} JPEGs in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def _peak_mb(stderr: str) -> float:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(m.group(1)) / 1024 if m else 0.0


def _args(model: str, root: Path, n: int, run: str, *extra: str) -> list[str]:
    return ["ingest", "--model", f"torchvision:{model}", "--num-classes", "100", "--input-size", "3x224x224",
            "--data", f"imagenet:{root}", "--split", "train", "--limit", str(n), "--edges", "coactivation",
            "--run", run, "--replace", "--device", "cpu", "--json", *extra]


def ingest(model: str, root: Path, n: int, *extra: str, nproc: int = 1) -> dict[str, Any]:
    run = f"stream-{model}-{n}-{nproc}"
    args = _args(model, root, n, run, *extra)
    cmd = ["/usr/bin/time", "-v", *CLI, *args] if nproc == 1 else \
        ["/usr/bin/time", "-v", sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
         "-m", "deepatlas", "--", *args]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{run} failed: {out.stderr[-1500:]}")
    rep = json.loads(out.stdout[out.stdout.index("{") :])  # print_json writes one indented object
    fwd = rep["seconds"]["forward+stats"]
    return {"model": model, "images": n, "processes": nproc, "peak_mb": round(_peak_mb(out.stderr), 1),
            "forward_stats_s": round(fwd, 1), "images_per_s": round(n / fwd, 2), "wall_s": round(wall, 1),
            "batch_size": rep["batch_size"], "memory_mb": rep["memory_mb"]}


def plain(model: str, root: Path, n: int, workers: int, batch: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", PLAIN, str(root / "train"), model, str(n), str(workers), str(batch)],
                         capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {"images_per_s": round(row["images"] / row["seconds"], 2), "seconds": round(row["seconds"], 1)}


def kill_and_resume(model: str, root: Path, n: int) -> dict[str, Any]:
    """Kill -9 an ingest in the middle of its pass, continue it with --resume; against one uninterrupted."""
    run = f"stream-killed-{n}"
    env = {**os.environ, "DEEPATLAS_CHECKPOINT_SECONDS": "30"}
    meta = Path(os.environ.get("DEEPATLAS_HOME", Path.home() / ".deepatlas")) / "resume" / run / "meta.json"
    t0 = time.perf_counter()
    proc = subprocess.Popen([*CLI, *_args(model, root, n, run, "--restart")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    done = 0
    while proc.poll() is None:
        try:
            done = json.loads(meta.read_text()).get("images_done") or 0
        except (OSError, ValueError):
            done = 0
        if done >= n // 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.5)
    proc.wait()
    killed_at = time.perf_counter() - t0
    t0 = time.perf_counter()
    resumed = subprocess.run([*CLI, *_args(model, root, n, run, "--resume")], env=env, capture_output=True, text=True,
                             check=False)
    if resumed.returncode:
        raise SystemExit(f"resume failed: {resumed.stderr[-1500:]}")
    rep = json.loads(resumed.stdout)
    return {"images": n, "saved_when_killed": done, "killed_after_s": round(killed_at, 1),
            "resume_s": round(time.perf_counter() - t0, 1), "resumed": rep["resumed"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,4000,16000")
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--resnet50-max", type=int, default=4000, help="largest size for resnet50 (time)")
    parser.add_argument("--skip-torchrun", action="store_true")
    parser.add_argument("--skip-kill", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    root = _folder(max(sizes))
    result: dict[str, Any] = {"flat": [], "throughput": [], "torchrun": [], "kill": None}
    for model in args.models.split(","):
        for n in sizes:
            if model == "resnet50" and n > args.resnet50_max:
                continue
            row = ingest(model, root, n)
            result["flat"].append(row)
            print(json.dumps(row), flush=True)
        first = next(r for r in result["flat"] if r["model"] == model)
        from deepatlas.data.base import default_workers

        workers = default_workers()  # what an ingest of image files uses
        base = plain(model, root, first["images"], workers, first["batch_size"])
        result["throughput"].append({"model": model, "images": first["images"], "workers": workers,
                                     "plain_images_per_s": base["images_per_s"], "ingest_images_per_s": first["images_per_s"],
                                     "ratio": round(first["images_per_s"] / base["images_per_s"], 3)})
        print(json.dumps(result["throughput"][-1]), flush=True)
    if not args.skip_torchrun:
        n = sizes[0]
        one = next(r for r in result["flat"] if r["model"] == "resnet18" and r["images"] == n)
        two = ingest("resnet18", root, n, nproc=2)
        result["torchrun"] = [one, two]
        print(json.dumps(two), flush=True)
    if not args.skip_kill:
        n = sizes[1] if len(sizes) > 1 else sizes[0]
        result["kill"] = kill_and_resume("resnet18", root, n)
        print(json.dumps(result["kill"]), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "streaming.json").write_text(json.dumps(result, indent=2))
    print("\n| model | images | peak RSS | forward+stats | images/s | batch |\n|---|---|---|---|---|---|")
    for r in result["flat"]:
        print(f"| {r['model']} | {r['images']:,} | {r['peak_mb']:,.0f} MB | {r['forward_stats_s']:.0f} s | "
              f"{r['images_per_s']:.1f} | {r['batch_size']} |")
    print("\n| model | images | workers | plain DataLoader + forward | ingest pass | ratio |\n|---|---|---|---|---|---|")
    for r in result["throughput"]:
        print(f"| {r['model']} | {r['images']:,} | {r['workers']} | {r['plain_images_per_s']:.1f} img/s | "
              f"{r['ingest_images_per_s']:.1f} img/s | {r['ratio']:.2f} |")
    if result["torchrun"]:
        a, b = result["torchrun"]
        print(f"\ntorchrun (gloo, CPU): 1 process {a['images_per_s']:.1f} img/s, 2 processes {b['images_per_s']:.1f} img/s "
              f"({b['images_per_s'] / a['images_per_s']:.2f}x); peak of the largest process {a['peak_mb']:.0f} vs "
              f"{b['peak_mb']:.0f} MB")
    if result["kill"]:
        k = result["kill"]
        print(f"\nkill -9 at {k['saved_when_killed']:,} of {k['images']:,} images ({k['killed_after_s']:.0f} s in); "
              f"--resume finished in {k['resume_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
