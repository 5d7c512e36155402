"""The ingest plan (deepatlas.ingest.budget): what Spearman's rank pass adds, on sizes known by hand."""

from __future__ import annotations

import pytest

from deepatlas.ingest.budget import FORWARD_LIVE, RANK_SLICE_MB, ModelSizes, plan_ingest
from deepatlas.ingest.ranks import BYTES_PER_EDGE, RANK_BINS

SIZES = ModelSizes(units=990, classes=10, input_shape=(1, 28, 28), output_mb=0.5, forward_s=0.001, backward_s=0.004)


def test_pearson_has_no_rank_stage() -> None:
    plan = plan_ingest(SIZES, 10_000, memory_mb=2048, pixel_grid="off", batch_size=100)
    assert "ranks" not in plan.memory_mb and "ranks" not in plan.seconds and plan.rank_bins == 0


def test_spearman_counts_the_sample_the_sketches_and_the_counting_pass() -> None:
    pearson = plan_ingest(SIZES, 10_000, memory_mb=2048, pixel_grid="off", batch_size=100)
    plan = plan_ingest(SIZES, 10_000, memory_mb=2048, pixel_grid="off", batch_size=100, correlation="spearman")
    v = 1000  # 990 units + 10 classes, no pixels
    assert plan.rank_bins == RANK_BINS  # 1,000 sketches of 2,048 edges fit the 512 MB share
    sketch = v * RANK_BINS * BYTES_PER_EDGE / 2**20
    sample = RANK_BINS * v * 4 / 2**20
    assert plan.memory_mb["ranks"] == pytest.approx(2 * sample + sketch + FORWARD_LIVE * 100 * 0.5 + RANK_SLICE_MB, abs=0.1)
    # the sketches stay while the co-moments are accumulated and selected, with a batch of ranks
    assert plan.memory_mb["forward+stats"] == pytest.approx(
        pearson.memory_mb["forward+stats"] + sketch + 100 * v * 4 / 2**20 + RANK_SLICE_MB, abs=0.2)
    assert plan.memory_mb["correlate+select"] == pytest.approx(pearson.memory_mb["correlate+select"] + sketch, abs=0.2)
    # time: the 2,048 sample images, then a counting pass over all 10,000
    assert plan.seconds["ranks"] == pytest.approx((RANK_BINS + 10_000) * 0.001, abs=0.1)
    few = plan_ingest(SIZES, 1_000, memory_mb=2048, pixel_grid="off", batch_size=100, correlation="spearman")
    assert few.seconds["ranks"] == pytest.approx(1.0, abs=0.1)  # the sample is every image: no counting pass
    assert few.memory_mb["ranks"] < plan.memory_mb["ranks"]  # sketches as wide as the data set


def test_the_sketches_shrink_to_the_matrix_share() -> None:
    big = ModelSizes(units=39_990, classes=10, input_shape=(3, 64, 64), output_mb=5.0)
    plan = plan_ingest(big, 100_000, memory_mb=2048, max_matrix_mb=256, pixel_grid="off", batch_size=10,
                       correlation="spearman")
    assert 64 <= plan.rank_bins < RANK_BINS
    assert 40_000 * plan.rank_bins * BYTES_PER_EDGE / 2**20 <= 256
