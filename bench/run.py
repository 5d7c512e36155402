"""deepatlas benchmarks: every figure is a ratio against a baseline run in the same process.

    python bench/run.py            # all benchmarks, full size
    python bench/run.py --quick    # small sizes, a minute or so
    python bench/run.py --only stats,capture,writes --device cuda

Prints a Markdown table and writes bench/out/results.json. Never run as a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepatlas.ingest.capture import ActivationRecorder
from deepatlas.ingest.stats import CoMoments
from deepatlas.models import FashionCNN

OUT = Path(__file__).resolve().parent / "out"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _best(fn: Callable[[], None], device: torch.device, repeat: int) -> float:
    """Best wall time of ``repeat`` runs after one warm-up."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_stats(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    """CoMoments.update against the bare GEMM it is built on, same shapes and dtype.

    Baseline: ``xc.T @ yc`` alone (2*B*Mx*My FLOPs), the floor any co-moment update pays.
    """
    rows = []
    batches = 4 if quick else 20
    b = 500
    for dtype in (torch.float64, torch.float32):
        for name, mx, my in (("units 250x250 (sym)", 250, None), ("pixels 784x250", 784, 250), ("wide 2048x2048 (sym)", 2048, None)):
            if quick and mx > 1000:
                continue
            g = torch.Generator(device="cpu").manual_seed(0)
            xs = [torch.randn(b, mx, generator=g, dtype=dtype).to(device) for _ in range(batches)]
            ys = [torch.randn(b, my, generator=g, dtype=dtype).to(device) for _ in range(batches)] if my else None
            ny = my or mx
            flops = 2.0 * b * mx * ny * batches

            def matmul(xs: list[torch.Tensor] = xs, ys: list[torch.Tensor] | None = ys) -> None:
                for i, x in enumerate(xs):
                    y = ys[i] if ys is not None else x
                    x.T @ y

            def acc(xs: list[torch.Tensor] = xs, ys: list[torch.Tensor] | None = ys, mx: int = mx,
                    my: int | None = my, dtype: torch.dtype = dtype) -> None:
                a = CoMoments(mx, my, dtype=dtype, device=device)
                for i, x in enumerate(xs):
                    a.update(x, ys[i] if ys is not None else None)

            t_mm, t_acc = _best(matmul, device, 3), _best(acc, device, 3)
            rows.append({
                "bench": "stats", "case": f"{name} {str(dtype).replace('torch.', '')}", "device": device.type,
                "baseline_gflops": flops / t_mm / 1e9, "gflops": flops / t_acc / 1e9, "ratio": t_mm / t_acc,
            })
    return rows


def bench_capture(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    """Forward with hooks + both accumulators against the plain forward on the same batches."""
    torch.manual_seed(0)
    model = FashionCNN().to(device).eval()
    n = 2000 if quick else 10000
    b = 500
    xs = [torch.rand(b, 1, 28, 28, device=device) for _ in range(n // b)]
    rec = ActivationRecorder(model, example=xs[0][:2])
    m = rec.n_units + 10
    rows = []
    for dtype in (torch.float32, torch.float64):
        def plain() -> None:
            with torch.no_grad():
                for x in xs:
                    model(x)

        def hooked(dtype: torch.dtype = dtype) -> None:
            units = CoMoments(m, dtype=dtype, device=device)
            pixels = CoMoments(784, m, dtype=dtype, device=device)
            for x in xs:
                acts, out = rec.record(x)
                nodes = torch.cat([acts, out.softmax(1)], 1)
                units.update(nodes)
                pixels.update(x.flatten(1), nodes)

        t_plain, t_hooked = _best(plain, device, 2), _best(hooked, device, 2)
        rows.append({"bench": "capture", "case": f"FashionCNN {n} images, stats {str(dtype).replace('torch.', '')}",
                     "device": device.type, "plain_s": t_plain, "hooked_s": t_hooked, "ratio": t_hooked / t_plain})
    return rows


def bench_writes(quick: bool) -> list[dict[str, Any]]:
    """The batched UNWIND writer against one transaction per edge, on the same edge rows."""
    from deepatlas.db.graph import Graph

    n_nodes = 500
    n_batched = 20_000 if quick else 100_000
    n_naive = 300 if quick else 1000
    rows = []
    with Graph() as g:
        g.write("CREATE CONSTRAINT bench_key IF NOT EXISTS FOR (n:BenchNode) REQUIRE n.key IS UNIQUE")
        g.write_until_done("MATCH (n:BenchNode) WITH n LIMIT $limit DETACH DELETE n RETURN count(*) AS count")
        g.write_batches("UNWIND $rows AS row CREATE (:BenchNode {key: row.k})", [{"k": f"b{i}"} for i in range(n_nodes)])
        gen = torch.Generator().manual_seed(0)
        src = torch.randint(0, n_nodes, (n_batched,), generator=gen).tolist()
        dst = torch.randint(0, n_nodes, (n_batched,), generator=gen).tolist()
        edges = [{"a": f"b{s}", "b": f"b{d}", "r": 0.5} for s, d in zip(src, dst, strict=True)]
        query = "UNWIND $rows AS row MATCH (a:BenchNode {key: row.a}) MATCH (b:BenchNode {key: row.b}) CREATE (a)-[e:BENCH_EDGE]->(b) SET e.r = row.r"
        t0 = time.perf_counter()
        g.write_batches(query, edges, batch_size=10_000)
        t_batched = time.perf_counter() - t0
        single = "MATCH (a:BenchNode {key: $a}) MATCH (b:BenchNode {key: $b}) CREATE (a)-[e:BENCH_EDGE]->(b) SET e.r = $r"
        t0 = time.perf_counter()
        for e in edges[:n_naive]:
            g.write(single, e)
        t_naive = time.perf_counter() - t0
        stored = g.read("MATCH (:BenchNode)-[e:BENCH_EDGE]->() RETURN count(e) AS c")[0]["c"]
        assert stored == n_batched + n_naive, stored
        g.write_until_done("MATCH (n:BenchNode) WITH n LIMIT $limit DETACH DELETE n RETURN count(*) AS count", limit=100)
        g.write("DROP CONSTRAINT bench_key IF EXISTS")
    rate_b, rate_n = n_batched / t_batched, n_naive / t_naive
    rows.append({"bench": "writes", "case": f"{n_batched} edges batched vs {n_naive} one-tx-per-edge", "device": "bolt",
                 "batched_edges_per_s": rate_b, "naive_edges_per_s": rate_n, "ratio": rate_b / rate_n})
    return rows


def bench_influence(quick: bool) -> list[dict[str, Any]]:
    """Neuron->neuron influence on ResNet-18 (random weights): ``between`` against one backward
    sweep per upper unit (the definition, and the code before the batching), same images.

    The baseline sweeps ``probe`` units of each pair and is scaled to all of them (a sweep's cost
    does not depend on which unit it seeds); the probed units' values are compared too.
    """
    from deepatlas.explain._hooks import capture_outputs
    from deepatlas.explain.influence import InfluentialScores
    from deepatlas.models.resnet import ResNet18

    torch.manual_seed(0)
    model = ResNet18().eval()
    b, probe = (20, 4) if quick else (100, 8)
    x = torch.rand(b, 1, 28, 28)
    inf = InfluentialScores(model)
    layers = model.capture_layers()
    t_new = t_old = 0.0
    worst = 0.0
    units = 0
    for lower, upper in itertools.pairwise(layers):
        t0 = time.perf_counter()
        got = inf.between(x, lower, upper)
        t_new += time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.enable_grad(), inf._rules():
            with capture_outputs(model, [lower, upper]) as cap:
                model(x.clone().requires_grad_(True))
            low, up = cap[lower], cap[upper]
            for j in range(probe):
                seed = torch.zeros_like(up)
                seed[:, j] = 1.0
                (g,) = torch.autograd.grad(up, low, grad_outputs=seed, retain_graph=j < probe - 1)
                worst = max(worst, float((g.flatten(2).sum(2) - got[:, :, j]).abs().max() / got.abs().max()))
        t_old += (time.perf_counter() - t0) * up.shape[1] / probe
        units += up.shape[1]
    return [{"bench": "influence", "case": f"ResNet-18 neuron->neuron, {len(layers) - 1} layer pairs, {units} upper "
             f"units, {b} images (baseline: {probe} sweeps per pair, scaled; max rel. diff {worst:.1e})",
             "device": "cpu", "sweeps_s": t_old, "batched_s": t_new, "ratio": t_old / t_new}]


def _correlation_graph(n: int = 3914, n_edges: int = 576_000) -> Any:
    """A synthetic co-activation-like graph: r of random unit vectors around 12 directions,
    the ``n_edges`` largest kept (the size of the ResNet-18 run's positive-r graph)."""
    import networkx as nx

    rng = np.random.default_rng(0)
    f = rng.standard_normal((n, 12))
    f[np.arange(n), rng.integers(0, 12, n)] += 2.5
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    iu = np.triu_indices(n, 1)
    vals = (f @ f.T)[iu]
    keep = vals >= np.sort(vals)[-n_edges]
    g = nx.Graph()
    g.add_nodes_from(f"n{i:05d}" for i in range(n))
    g.add_weighted_edges_from((f"n{a:05d}", f"n{b:05d}", float(w)) for a, b, w in zip(iu[0][keep], iu[1][keep], vals[keep], strict=True))
    return g


def bench_louvain(run: str | None, synthetic: bool = True) -> list[dict[str, Any]]:
    """Each community backend against python-louvain (same graph, seed 0): time (igraph
    backends include building their copy of the graph) and modularity. Graphs: the stored run's
    hidden+class subgraph, and a synthetic 576k-edge correlation graph (ResNet-18's size)."""
    from deepatlas.db.analytics import read_run_graph
    from deepatlas.db.graph import Graph
    from deepatlas.db.runs import resolve_run
    from deepatlas.graphops import coactivation_graph, louvain

    with Graph() as g:
        info = resolve_run(g, run)
        rg = read_run_graph(g, info)
    graphs = [(info.name, coactivation_graph([*rg.neurons, *rg.classes], rg.edges))]
    if synthetic:
        graphs.append(("synthetic correlation graph", _correlation_graph()))
    import igraph  # noqa: F401  (imported before the clock starts: a first import costs seconds)

    from deepatlas.graphops import communities

    rows = []
    for name, graph in graphs:
        # the workflow's path: from the run's (a, b, r) rows; python-louvain pays for its networkx
        # graph, the C backends build their igraph from integer arrays
        # (best of 3 after a warm-up on both sides: single C runs varied 0.6-1.0 s in one process)
        keys = list(graph.nodes)
        edge_rows = [(a, b, float(d.get("r", d["weight"]))) for a, b, d in graph.edges(data=True)]
        cpu = torch.device("cpu")
        base_rows, _ = communities(keys, edge_rows, seed=0, algorithm="python-louvain")
        t_rows = _best(lambda k=keys, e=edge_rows: communities(k, e, seed=0, algorithm="python-louvain"), cpu, 3)
        for algorithm in ("igraph", "leiden"):
            part, _ = communities(keys, edge_rows, seed=0, algorithm=algorithm)
            t = _best(lambda k=keys, e=edge_rows, a=algorithm: communities(k, e, seed=0, algorithm=a), cpu, 3)
            rows.append({"bench": "louvain", "case": f"{name}, from rows (the workflow's path, best of 3): {len(edge_rows)} rows; "
                         f"{algorithm}: {len(part.communities)} communities (python-louvain {len(base_rows.communities)})",
                         "device": "cpu", "python_louvain_s": t_rows, "python_louvain_q": base_rows.modularity,
                         "algorithm": algorithm, "seconds": t, "q": part.modularity, "ratio": t_rows / t})
        t0 = time.perf_counter()
        base = louvain(graph, seed=0, algorithm="python-louvain")
        t_pl = time.perf_counter() - t0
        for algorithm in ("igraph", "leiden"):
            t0 = time.perf_counter()
            part = louvain(graph, seed=0, algorithm=algorithm)
            t = time.perf_counter() - t0
            same = louvain(graph, seed=0, algorithm=algorithm).membership == part.membership
            rows.append({"bench": "louvain", "case": f"{name}: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} "
                         f"edges; {algorithm}: {len(part.communities)} communities (python-louvain "
                         f"{len(base.communities)}), same again with seed 0: {same}",
                         "device": "cpu", "python_louvain_s": t_pl, "python_louvain_q": base.modularity,
                         "algorithm": algorithm, "seconds": t, "q": part.modularity, "ratio": t_pl / t})
    return rows


def bench_queries(run: str | None, repeat: int) -> list[dict[str, Any]]:
    """p50 / p95 latency of every template on a stored run (after one warm-up call each)."""
    from deepatlas.db.graph import Graph
    from deepatlas.db.queries import run_template
    from deepatlas.db.runs import resolve_run
    from deepatlas.db.templates import list_templates

    rows = []
    with Graph() as g:
        info = resolve_run(g, run)
        edges = g.read("MATCH (n:Neuron {run: $k})-[e]->() RETURN count(e) AS n", {"k": info.key})[0]["n"]
        edges += g.read("MATCH (n:Pixel {run: $k})-[e]->() RETURN count(e) AS n", {"k": info.key})[0]["n"]
        top = run_template(g, "class_drivers", {"run": info.name, "class": "Sandal", "k": 1})
        values = {"run": info.name, "class": "Sandal", "k": 10, "a": "Shirt", "b": "T-shirt/top", "community": 0,
                  "by": "influence", "layer": top[0]["layer"] if top else "relu4", "unit": top[0]["unit"] if top else 0,
                  "base": info.name, "head": info.name}  # a run against itself: the comparison templates run on nothing stored
        for t in list_templates():
            params = {p: values[p] for p in t.params}
            run_template(g, t.name, params)
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                run_template(g, t.name, params)
                times.append(time.perf_counter() - t0)
            times.sort()
            rows.append({"bench": "queries", "case": f"{t.name} ({info.name}, {edges} edges)", "device": "bolt",
                         "p50_ms": 1000 * times[len(times) // 2], "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))],
                         "ratio": float("nan")})
    return rows


def bench_resnet(device: torch.device, quick: bool) -> tuple[list[dict[str, Any]], str]:
    """ResNet-18 (28x28 grey) end to end: train briefly, co-activation dense vs blockwise, ingest.

    Baselines for the blockwise co-activation: the dense single pass on the same images (the
    ratio is what bounding the memory costs) and the blockwise path that runs the model once per
    block (what keeping the node values saves). Then a full ingest (all three edge kinds,
    neuron->neuron influence included, the blockwise path) with its time per stage and edges written.
    Returns the rows and the run's name (the query and Louvain benchmarks then use it).
    """
    import resource

    from deepatlas.data import load_fashion_mnist
    from deepatlas.ingest.coactivation import compute_coactivation
    from deepatlas.ingest.pairs import SparsifyParams, select_pairs
    from deepatlas.models import load_checkpoint
    from deepatlas.workflows.build import ingest, train_reference
    from deepatlas.workspace import Workspace

    train_n, n = (2000, 1000) if quick else (20000, 10000)
    path = OUT / f"resnet18-{train_n}.pt"
    rows: list[dict[str, Any]] = []
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        rep = train_reference(Workspace(device=str(device)), path, arch="resnet18", epochs=1, train_limit=train_n)
        rows.append({"bench": "resnet", "case": f"train 1 epoch on {train_n} images (test accuracy {rep.test_accuracy:.1%})",
                     "device": device.type, "seconds": rep.train_seconds, "ratio": float("nan")})
    ckpt = load_checkpoint(path)
    data = load_fashion_mnist("test").subset(n)
    # quick: few images make many pairs strong; a stricter cut keeps the smoke run small
    params = SparsifyParams(min_abs_r=0.9, top_k=2) if quick else SparsifyParams()
    t0 = time.perf_counter()
    dense = compute_coactivation(ckpt.model, data, device=device, normalize=ckpt.normalize, max_matrix_mb=None,
                                 sparsify=params)
    t_dense = time.perf_counter() - t0
    m = dense.n_hidden + 10
    budget = m * m * 8 / 2**20 / 4 + 0.01  # a quarter of the dense matrix: 4 blocks, 4 passes
    t0 = time.perf_counter()
    block = compute_coactivation(ckpt.model, data, device=device, normalize=ckpt.normalize, max_matrix_mb=budget,
                                 sparsify=params)
    t_block = time.perf_counter() - t0
    t0 = time.perf_counter()
    rerun = compute_coactivation(ckpt.model, data, device=device, normalize=ckpt.normalize, max_matrix_mb=budget,
                                 sparsify=params, cache_mb=0.0, spill=False)
    t_rerun = time.perf_counter() - t0
    assert dense.units.r is not None and block.pairs is not None and rerun.pairs is not None
    i, j, _ = select_pairs(dense.units.r.numpy(), np.arange(m) >= m - 10, dense.units.dead_x.numpy(), params, n=n)
    same = i.tolist() == block.pairs.i.tolist() and j.tolist() == block.pairs.j.tolist()
    same_r = bool(np.array_equal(block.pairs.r, rerun.pairs.r))
    rows.append({"bench": "resnet", "case": f"co-activation {m} nodes x {n} images: blockwise ({block.passes} blocks, "
                 f"{budget:.0f} MB, node values kept in {block.cache}) vs dense ({m * m * 8 / 2**20:.0f} MB); "
                 f"same {len(i)} pairs: {same}",
                 "device": device.type, "dense_s": t_dense, "blockwise_s": t_block, "ratio": t_block / t_dense})
    rows.append({"bench": "resnet", "case": f"one-pass blockwise (1 forward pass) vs re-running the model per block "
                 f"({rerun.forward_passes} passes); same pairs and r: {same_r}",
                 "device": device.type, "rerun_s": t_rerun, "onepass_s": t_block, "ratio": t_rerun / t_block})
    del dense, block, rerun
    run = "bench-resnet18"
    with Workspace(run=run, model=ckpt, data=data, device=str(device)) as ws:
        rep = ingest(ws, sparsify=params, max_matrix_mb=budget, replace=True)
    edges = sum(rep.edges.values())
    for stage, sec in rep.seconds.items():
        rows.append({"bench": "resnet", "case": f"ingest stage {stage}", "device": device.type, "seconds": sec,
                     "ratio": float("nan")})
    total = sum(rep.seconds.values())
    rows.append({"bench": "resnet", "case": f"ingest total: {rep.nodes['Neuron']} neurons, {edges} edges "
                 f"({', '.join(f'{k} {v}' for k, v in rep.edges.items())}); peak RSS "
                 f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB",
                 "device": device.type, "seconds": total, "edges_per_s": edges / rep.seconds["write"], "ratio": float("nan")})
    return rows, run


def machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = "?"
    return {"commit": commit, "python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def bench_cli_start(repeat: int) -> list[dict[str, Any]]:
    """Cold start of read-only commands against a bare ``import neo4j, typer, rich``.

    Each command is a fresh interpreter (best of ``repeat``); peak RSS is the child's maxrss.
    ``query list`` and ``--help`` need no server, so the figure is the start-up alone.
    """
    # the child reports its own peak (VmHWM is per process image, so the forked parent's does not count)
    probe = ("import atexit, sys\n"
             "def peak():\n"
             "    for line in open('/proc/self/status'):\n"
             "        if line.startswith('VmHWM'):\n"
             "            sys.stderr.write('PEAK ' + line.split()[1] + '\\n')\n"
             "atexit.register(peak)\n"
             "if sys.argv[1:] == ['--bare']:\n"
             "    import neo4j, typer, rich\n"
             "else:\n"
             "    from deepatlas.cli.app import main\n"
             "    sys.argv[0] = 'deepatlas'\n"
             "    main()\n")

    def run(args: list[str]) -> tuple[float, float]:
        best, peak = float("inf"), 0.0
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", probe, *args], check=False, capture_output=True, text=True)
            best = min(best, time.perf_counter() - t0)
            peak = max(peak, float(out.stderr.rsplit("PEAK ", 1)[1].split()[0]) / 1024)
        return best, peak

    base_s, base_mb = run(["--bare"])
    rows = []
    for args in (["--help"], ["query", "list"], ["runs", "--help"], ["ingest", "--help"]):
        s, mb = run(args)
        rows.append({"bench": "cli-start", "case": f"deepatlas {' '.join(args)} vs import neo4j, typer, rich", "device": "cpu",
                     "seconds": round(s, 3), "baseline_seconds": round(base_s, 3), "ratio": round(s / base_s, 2),
                     "peak_rss_mb": round(mb), "baseline_rss_mb": round(base_mb)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--only", default="cli,stats,capture,writes,influence,louvain,queries,resnet",
                        help="comma-separated: cli,stats,capture,writes,influence,louvain,queries,resnet (resnet also runs "
                             "louvain and queries on the ResNet-18 run it writes)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--run", default=None, help="run for the louvain and queries benchmarks (default: latest)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    chosen = set(args.only.split(","))
    rows: list[dict[str, Any]] = []
    if "cli" in chosen:
        rows += bench_cli_start(3 if args.quick else 5)
    if "stats" in chosen:
        rows += bench_stats(device, args.quick)
    if "capture" in chosen:
        rows += bench_capture(device, args.quick)
    if "writes" in chosen:
        rows += bench_writes(args.quick)
    if "influence" in chosen:
        rows += bench_influence(args.quick)
    if "louvain" in chosen:
        rows += bench_louvain(args.run)
    if "queries" in chosen:
        rows += bench_queries(args.run, 20 if args.quick else 100)
    if "resnet" in chosen:
        resnet_rows, resnet_run = bench_resnet(device, args.quick)
        rows += resnet_rows
        rows += bench_louvain(resnet_run, synthetic="louvain" not in chosen)
        rows += bench_queries(resnet_run, 20 if args.quick else 100)
    info = machine()
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    print(f"machine: {json.dumps(info)}\n")
    print("| bench | case | device | baseline | measured | ratio |\n|---|---|---|---|---|---|")
    for r in rows:
        if r["bench"] == "stats":
            base, got = f"matmul {r['baseline_gflops']:.1f} GFLOP/s", f"{r['gflops']:.1f} GFLOP/s"
        elif r["bench"] == "capture":
            base, got = f"plain forward {r['plain_s']:.3f} s", f"hooks+stats {r['hooked_s']:.3f} s"
        elif r["bench"] == "influence":
            base, got = f"one sweep per unit {r['sweeps_s']:.1f} s", f"between {r['batched_s']:.1f} s"
        elif r["bench"] == "louvain":
            base = f"python-louvain {r['python_louvain_s']:.3f} s, Q={r['python_louvain_q']:.3f}"
            got = f"{r['algorithm']} {r['seconds']:.3f} s, Q={r['q']:.3f}"
        elif r["bench"] == "resnet" and "rerun_s" in r:
            base, got = f"re-run per block {r['rerun_s']:.1f} s", f"one pass {r['onepass_s']:.1f} s"
        elif r["bench"] == "resnet" and "dense_s" in r:
            base, got = f"dense {r['dense_s']:.1f} s", f"blockwise {r['blockwise_s']:.1f} s"
        elif r["bench"] == "resnet":
            base = "" if "edges_per_s" not in r else f"written at {r['edges_per_s']:.0f} edges/s"
            got = f"{r['seconds']:.1f} s"
        elif r["bench"] == "queries":
            base, got = f"p50 {r['p50_ms']:.1f} ms", f"p95 {r['p95_ms']:.1f} ms"
        elif r["bench"] == "cli-start":
            base = f"bare imports {r['baseline_seconds']:.2f} s, {r['baseline_rss_mb']} MB"
            got = f"{r['seconds']:.2f} s, peak {r['peak_rss_mb']} MB"
        else:
            base, got = f"naive {r['naive_edges_per_s']:.0f} edges/s", f"batched {r['batched_edges_per_s']:.0f} edges/s"
        print(f"| {r['bench']} | {r['case']} | {r['device']} | {base} | {got} | {r['ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
