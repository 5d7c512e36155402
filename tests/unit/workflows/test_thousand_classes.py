"""1,000 classes (ImageNet's): the class-level analyses stay fast and their outputs readable."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from deepatlas.db.runs import RunInfo
from deepatlas.graphops.overlap import class_neuron_sets, jaccard_matrix
from deepatlas.report.figures import (
    class_community_graph,
    jaccard_mistakes_scatter,
    notable_classes,
)
from deepatlas.workflows.analysis import ALL_PAIRS_CLASSES, _overlap


def _run_graph(classes: int, neurons: int, seed: int = 0) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    run = RunInfo("k", "imagenet-run", "complete", None, None, None, None, None, None, None, {}, {})
    confusion = np.zeros((classes, classes), dtype=np.int64)
    a = rng.integers(0, classes, 3000)
    b = rng.integers(0, classes, 3000)
    np.add.at(confusion, (a, b), 1)
    return SimpleNamespace(run=run, neurons=[{"key": f"n{i}", "layer": "blk", "index": i} for i in range(neurons)],
                           classes=[{"key": f"c{c}", "index": c, "name": f"class{c:03d}"} for c in range(classes)],
                           class_r=rng.standard_normal((neurons, classes)), confusion=confusion,
                           class_names=[f"class{c:03d}" for c in range(classes)])


def test_jaccard_equals_the_set_definition() -> None:
    rng = np.random.default_rng(1)
    sets = [set(rng.choice(50, size=int(rng.integers(0, 8)), replace=False).tolist()) for _ in range(30)]
    want = np.array([[len(a & b) / len(a | b) if a | b else 0.0 for b in sets] for a in sets])
    assert np.allclose(jaccard_matrix(sets), want)


def test_a_thousand_classes_list_only_the_informative_pairs_and_draw_readable_figures(tmp_path: Path) -> None:
    rg = _run_graph(1000, 4000)
    t0 = time.perf_counter()
    ov = _overlap(rg, 10, None)  # type: ignore[arg-type]
    took = time.perf_counter() - t0
    assert ov.stats.n_pairs == 499_500  # the correlation is over every pair
    assert 0 < len(ov.pairs) < 30_000  # only pairs that share a neuron or were confused are listed
    assert all(p["jaccard"] > 0 or p["mistakes"] > 0 for p in ov.pairs)
    sets = class_neuron_sets(rg.class_r, top_k=10)
    listed = {(p["a"], p["b"]) for p in ov.pairs}
    for a, b in [(3, 17), (100, 900), (5, 6)]:
        shared = sets[a] & sets[b]
        mistakes = rg.confusion[a, b] + rg.confusion[b, a]
        assert ((f"class{a:03d}", f"class{b:03d}") in listed) == bool(shared or mistakes)
    assert took < 60  # seconds, generous: a million Python set operations took minutes
    shown = notable_classes(ov, 30)
    assert len(shown) == 30
    comm = SimpleNamespace(communities=[{"index": 0, "classes": shown[:20], "size": 400}], modularity=0.4,
                           params={"algorithm": "leiden"})
    for path in (class_community_graph(ov, comm, tmp_path / "c.png"), jaccard_mistakes_scatter(ov, tmp_path / "s.png")):
        with Image.open(path) as im:
            assert im.width < 2000 and im.height < 2000  # one readable figure, not a 1,000-label strip
    small = _run_graph(ALL_PAIRS_CLASSES, 400)
    assert len(_overlap(small, 10, None).pairs) == ALL_PAIRS_CLASSES * (ALL_PAIRS_CLASSES - 1) // 2  # type: ignore[arg-type]
