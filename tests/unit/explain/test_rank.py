from __future__ import annotations

import pytest
import torch

from deepatlas.data.synthetic import make_synthetic
from deepatlas.errors import UsageError
from deepatlas.explain.rank import rank_statistics


def test_synthetic_labels_follow_the_formulas() -> None:
    s = make_synthetic("orange-skin", 500, seed=3)
    assert s.x.shape == (500, 10) and s.relevant == (0, 1, 2, 3)
    assert float(s.x.min()) >= 1.0 and float(s.x.max()) <= 2.0
    want = 1 / (1 + torch.exp((s.x[:, :4].double() ** 2).sum(1) - 10))
    assert torch.allclose(s.y[:, 1].double(), want, atol=1e-6) and torch.allclose(s.y.sum(1), torch.ones(500))
    p = make_synthetic("plus-one", 10)
    assert torch.allclose(p.y[:, 1].double(), 1 / (1 + torch.exp(p.x[:, 0].double() * p.x[:, 1] - 2)), atol=1e-6)
    t = make_synthetic("two-features", 10)
    assert float(t.x.max()) <= 1.0 and t.relevant == (0, 1)
    assert torch.equal(make_synthetic("two-features", 10, seed=1).x, make_synthetic("two-features", 10, seed=1).x)
    with pytest.raises(UsageError):
        make_synthetic("spiral", 10)


def test_rank_statistics_by_hand() -> None:
    scores = torch.tensor([
        [0.9, -0.8, 0.1, 0.0],   # relevant (0, 1) on top
        [0.2, 0.9, 0.5, 0.0],    # input 2 outranks input 0
        [-0.1, 0.3, 0.05, 0.2],  # top-2 = {1, 3}: not the relevant set, 3 outranks 0
    ])
    st = rank_statistics(scores, (0, 1), order="abs")
    assert st["top_ranks"] == pytest.approx(1 / 3) and st["outranked"] == pytest.approx(2 / 3)
    assert st["mean_rank"][0] == pytest.approx((1 + 3 + 3) / 3)  # ranks of input 0: 1st, 3rd, 3rd


def test_signed_ranking_differs_from_abs() -> None:
    """Input 1 has a large negative score: by |score| it is on top, signed it is last."""
    scores = torch.tensor([
        [0.9, -0.8, 0.1, 0.0],   # |score|: {0, 1} on top; signed: 0, 2, 3, 1
        [0.2, 0.9, 0.5, 0.0],    # both orders: 1, 2, 0, 3
        [0.4, 0.3, -0.6, 0.2],   # |score|: 2, 0, 1, 3 ; signed: 0, 1, 3, 2 -> relevant on top
    ])
    signed = rank_statistics(scores, (0, 1))
    absolute = rank_statistics(scores, (0, 1), order="abs")
    assert signed["order"] == "signed" and absolute["order"] == "abs"
    assert signed["top_ranks"] == pytest.approx(1 / 3) and absolute["top_ranks"] == pytest.approx(1 / 3)
    assert signed["outranked"] == pytest.approx(2 / 3) and absolute["outranked"] == pytest.approx(2 / 3)
    assert signed["mean_rank"] == pytest.approx([(1 + 3 + 1) / 3, (4 + 1 + 2) / 3, (2 + 2 + 4) / 3, (3 + 4 + 3) / 3])
    assert absolute["mean_rank"] == pytest.approx([(1 + 3 + 2) / 3, (2 + 1 + 3) / 3, (3 + 2 + 1) / 3, (4 + 4 + 4) / 3])
    assert rank_statistics(scores[:1], (0, 1))["top_ranks"] == 0.0  # signed: -0.8 ranks last
    assert rank_statistics(scores[:1], (0, 1), order="abs")["top_ranks"] == 1.0
    with pytest.raises(UsageError):
        rank_statistics(scores, (0, 1), order="magnitude")


def test_the_relevant_inputs_raise_node_0_under_the_formulas() -> None:
    from deepatlas.data.synthetic import raised_node

    for name in ("two-features", "plus-one", "orange-skin"):
        s = make_synthetic(name, 2_000, seed=0)
        assert raised_node(s) == 0, name
        # by hand: moving every relevant input up raises Y0 = 1 - Y1 on every sample
        bumped = s.x.clone().double()
        bumped[:, list(s.relevant)] += 0.01
        z0 = s.y[:, 0].double()
        if name == "two-features":
            z = bumped[:, 0] * bumped[:, 1]
        elif name == "plus-one":
            z = bumped[:, 0] * bumped[:, 1] - 2
        else:
            z = (bumped[:, :4] ** 2).sum(1) - 10
        assert bool((1 - torch.sigmoid(-z) >= z0 - 1e-6).all())


def test_the_rank_experiment_scores_the_raised_node_and_labels_the_variants() -> None:
    from deepatlas.explain.rank import rank_experiment

    res = rank_experiment("plus-one", n_train=3_000, n_test=300, epochs=2, seed=0)
    assert res["node"] == 0
    assert set(res["variants"]) == {"raised-abs", "predicted-signed", "predicted-abs"}
    assert res["abs_variant"] == res["variants"]["raised-abs"]
    assert sum(res["predicted_share"].values()) == pytest.approx(1.0)
    # the headline and the predicted-node variant are different rankings: they differ on samples
    # predicted as node 1 (the paper's node is fixed; the predicted one moves with the class mix)
    if res["predicted_share"]["1"] > 0.05:
        assert res["top_ranks"] != res["variants"]["predicted-signed"]["top_ranks"]


def test_explain_rank_prints_the_headline_and_each_labelled_variant() -> None:
    from typer.testing import CliRunner

    from deepatlas.cli.app import app

    r = CliRunner().invoke(app, ["explain", "rank", "--dataset", "plus-one", "--n-train", "500", "--n-test", "50",
                                 "--epochs", "1"], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "scored on output node 0" in r.output and "signed score on Y_1, descending (the paper's)" in r.output
    for label in ("variant: |score| on Y_1", "variant: signed score on the predicted node", "variant: |score| on the predicted node"):
        assert label in r.output
