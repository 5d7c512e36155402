"""Switch gates on a toy model whose core units are known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepatlas.errors import UsageError
from deepatlas.explain.switchgate import (
    INPUT,
    SwitchGates,
    _gated,
    balanced_holding_rate,
    center_classifier,
    holding_rate,
    phi,
    yb_holding_rate,
)


def _toy() -> nn.Module:
    """h = relu(W x): h0 = x0, h1 = x1, h2..h5 = noise features with zero outgoing weight.
    out0 = h0 - h1, out1 = h1 - h0: class 0 iff x0 > x1. Units 0 and 1 are the core."""
    m = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 2, bias=False))
    with torch.no_grad():
        w1 = torch.zeros(6, 4)
        w1[0, 0] = w1[1, 1] = 1.0
        w1[2:, 2:] = torch.tensor([[1.0, 0.5], [0.3, 1.0], [1.0, 1.0], [0.2, 0.7]])
        m[0].weight.copy_(w1)
        w2 = torch.zeros(2, 6)
        w2[0, 0], w2[0, 1], w2[1, 0], w2[1, 1] = 1.0, -1.0, -1.0, 1.0
        m[2].weight.copy_(w2)
    return m.eval()


def _data(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives: predicted class 1 (x1 > x0). Class 1, not 0, so that closing every gate
    (all-zero scores, argmax 0) cannot hold the prediction by accident."""
    x = torch.rand(400, 4, generator=torch.Generator().manual_seed(0))
    preds = model(x).argmax(1)
    return x[preds == 1][:100], x[preds == 0][:100]


def test_gates_find_the_core_units_and_binarise() -> None:
    model = _toy()
    pos, neg = _data(model)
    res = SwitchGates(model, ["1"]).fit(pos, neg, target=1)
    assert res.kept["1"] == [0, 1]
    b = res.gates["1"]
    assert bool(((b < 0.1) | (b > 0.9)).all())  # converged near 0/1
    assert res.holding_rate == res.positive_holding_rate == 1.0  # the other units contribute nothing, so predictions hold exactly
    assert len(res.random_holding_rates) == 5
    assert res.fit_history[-1] < min(0.1, res.fit_history[0])  # the gated model still separates the set
    assert all(p.requires_grad for p in model.parameters())  # the model is handed back unfrozen
    assert sum(len(mod._forward_hooks) for mod in model.modules()) == 0


def test_holding_rate_exact_on_chosen_masks() -> None:
    model = _toy()
    pos, _ = _data(model)
    core = torch.tensor([1.0, 1, 0, 0, 0, 0])
    assert holding_rate(model, pos, 1, {"1": core}) == 1.0
    only_h0 = torch.tensor([1.0, 0, 0, 0, 0, 0])  # out1 = -h0 < out0 = h0 whenever x0 > 0
    assert holding_rate(model, pos, 1, {"1": only_h0}) == pytest.approx(float((pos[:, 0] == 0).float().mean()))
    assert holding_rate(model, pos, 1, {"1": torch.zeros(6)}) == 0.0


def test_input_gates_train_on_positives_and_pick_the_informative_input() -> None:
    """With out0 biased by +0.5, class 1 needs x1 > x0 + 0.25. Trained on the positives only (the
    paper's input gating), x1 alone keeps every positive (out1 = x1 > 0.5 - x1 = out0 since
    x1 > 0.25), so the minimal informative set is {x1}; x2, x3 feed only unused units."""
    model = _toy()
    with torch.no_grad():
        model[2].bias = nn.Parameter(torch.tensor([0.5, 0.0]))
    x = torch.rand(600, 4, generator=torch.Generator().manual_seed(0))
    preds = model(x).argmax(1)
    pos, neg = x[preds == 1][:100], x[preds == 0][:100]
    res = SwitchGates(model, [INPUT]).fit(pos, neg, target=1)
    assert res.params["trained_on"] == "positives"
    assert res.kept[INPUT] == [1]
    assert res.positive_holding_rate == 1.0


def test_all_gates_closed_scores_half_not_one() -> None:
    """A model whose closed layer leaves only the bias, which favours the target class: every
    positive keeps its verdict, every negative flips, so the paper's rate is 0.5 where the
    positives-only rate is 1.0."""
    model = _toy()
    with torch.no_grad():
        model[2].bias = nn.Parameter(torch.tensor([0.0, 0.1]))  # all-zero hidden layer -> class 1
    x = torch.rand(400, 4, generator=torch.Generator().manual_seed(1))
    preds = model(x).argmax(1)
    pos, neg = x[preds == 1][:80], x[preds == 0][:80]
    assert len(pos) == len(neg) == 80
    closed = {"1": torch.zeros(6)}
    assert holding_rate(model, pos, 1, closed) == 1.0
    assert balanced_holding_rate(model, torch.cat([pos, neg]), 1, closed) == pytest.approx(0.5)
    assert balanced_holding_rate(model, torch.cat([pos, neg]), 1, {"1": torch.ones(6)}) == 1.0


def test_satisfied_classifier_iff_gated_model_predicts_the_class() -> None:
    """y_b = 1 exactly for the samples the gated model predicts as c, below 1 elsewhere."""
    model = _toy()
    x = torch.rand(300, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    model = model.double()
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        mask = (torch.rand(6, generator=g) > 0.4).double()
        mask[torch.randint(0, 2, (1,), generator=g)] = 1.0  # at least one of the core units, so no all-zero ties
        with _gated(model, {"1": mask}), torch.no_grad():
            s = model(x)
        for target in (0, 1):
            yb = center_classifier(s, target, 3.0, 0.5)
            predicts = s.argmax(1) == target
            assert torch.equal(yb == 1.0, predicts)
            assert bool((yb[~predicts] < 1.0).all()) and bool((yb > 0).all())
    # v grows with the gap to the winner: y_b = 2 / (1 + exp(w_b * gap / sd)) by hand
    s = torch.tensor([[2.0, 0.5]], dtype=torch.float64)
    assert float(center_classifier(s, 1, 2.0, 0.5)[0]) == pytest.approx(2 / (1 + math.exp(2.0 * 1.5 / 0.5)))


def test_seeded_minibatch_order() -> None:
    model = _toy()
    pos, neg = _data(model)
    a = SwitchGates(model, ["1"]).fit(pos, neg, target=1, steps=30, seed=0, random_seeds=())
    b = SwitchGates(model, ["1"]).fit(pos, neg, target=1, steps=30, seed=0, random_seeds=())
    c = SwitchGates(model, ["1"]).fit(pos, neg, target=1, steps=30, seed=1, random_seeds=())
    assert a.loss_history == b.loss_history
    assert a.loss_history != c.loss_history


def test_phi_and_errors() -> None:
    assert float(phi(torch.tensor(0.5))) == 0.5 and float(phi(torch.tensor(0.0))) < 0.1
    with pytest.raises(UsageError, match="unknown layer"):
        SwitchGates(_toy(), ["nope"])
    with pytest.raises(UsageError, match="balanced set"):
        SwitchGates(_toy(), ["1"]).fit(torch.zeros(0, 4), torch.rand(3, 4), target=0)


def test_gates_on_one_call_of_a_shared_module() -> None:
    """torchvision's BasicBlock calls one ReLU twice: a gate on ``relu#2`` scales only the second
    call (the block's output), as the hook sites elsewhere do."""
    import torchvision

    from deepatlas.explain.switchgate import _gated

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.rand(2, 3, 32, 32)
    sg = SwitchGates(net, ["layer1.0.relu#2"])
    assert sg._shapes(x) == {"layer1.0.relu#2": (64,)}
    with torch.no_grad():
        plain = net(x)
        with _gated(net, {"layer1.0.relu#2": torch.ones(64)}):
            same = net(x)
        with _gated(net, {"layer1.0.relu#2": torch.zeros(64)}):
            closed = net(x)
        with _gated(net, {"layer1.0.relu#1": torch.zeros(64)}):
            first_closed = net(x)
    assert torch.allclose(plain, same) and not torch.allclose(plain, closed)
    assert not torch.allclose(closed, first_closed)  # the two calls are told apart
    with pytest.raises(UsageError, match="unknown layer"):
        SwitchGates(net, ["layer1.0.nope#2"])


def _margin_data(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`_data`, without near-ties (|x0 - x1| > 0.2): every negative's gap to class 1 is
    then large enough that the y_b >= 0.5 rule and the arg-max rule agree on the ungated model."""
    x = torch.rand(600, 4, generator=torch.Generator().manual_seed(0))
    x = x[(x[:, 0] - x[:, 1]).abs() > 0.2]
    preds = model(x).argmax(1)
    return x[preds == 1][:100], x[preds == 0][:100]


def test_scores_are_probabilities_by_default() -> None:
    """sd = sqrt(var y) over D'_c is the softmax probabilities' (it would be the logits' with
    scores="logits"), and the y_b-rule holding rate is the one computed by hand from them."""
    model = _toy()
    pos, neg = _margin_data(model)
    res = SwitchGates(model, ["1"]).fit(pos, neg, target=1, steps=40, random_seeds=(0,))
    everything = torch.cat([pos, neg])
    with torch.no_grad():
        out = model(everything)
    assert res.params["scores"] == "probs"
    assert res.sd == pytest.approx(float(out.softmax(1).var().sqrt()), rel=1e-6)
    assert res.sd != pytest.approx(float(out.var().sqrt()), rel=1e-2)  # what logits would give
    mask = torch.zeros(6)
    mask[res.kept["1"]] = 1
    with _gated(model, {"1": mask}), torch.no_grad():
        probs = model(everything).softmax(1)
    yb = center_classifier(probs, 1, res.w_b, res.sd)
    by_hand = float(((yb >= 0.5) == (torch.arange(len(everything)) < len(pos))).double().mean())
    assert res.holding_rate_yb == pytest.approx(by_hand)
    logits = SwitchGates(model, ["1"]).fit(pos, neg, target=1, steps=40, scores="logits", random_seeds=())
    assert logits.sd == pytest.approx(float(out.var().sqrt()), rel=1e-6)
    with pytest.raises(UsageError, match="scores"):
        SwitchGates(model, ["1"]).fit(pos, neg, target=1, steps=2, scores="odds")


def test_yb_rule_against_the_argmax_rule() -> None:
    """y_b >= 0.5 iff w_b * gap / sd <= ln 3: the rule says "c" for every sample the arg-max
    rule does (gap 0), and for near misses; for a huge w_b the two rules coincide."""
    model = _toy().double()
    x = torch.rand(300, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    preds = model(x).argmax(1)
    pos, neg = x[preds == 1][:80], x[preds == 0][:80]
    everything = torch.cat([pos, neg])
    g = torch.Generator().manual_seed(5)
    for _ in range(5):
        mask = {"1": (torch.rand(6, generator=g) > 0.5).double()}
        argmax = balanced_holding_rate(model, everything, 1, mask)
        assert yb_holding_rate(model, everything, len(pos), 1, mask, 1e12, 0.3) == pytest.approx(argmax)
        assert yb_holding_rate(model, pos, len(pos), 1, mask, 0.5, 0.3) >= holding_rate(model, pos, 1, mask)
    # the threshold by hand: probabilities (0.7, 0.3) for target 1, gap 0.4, sd 0.2: v = 2 w_b
    s = torch.tensor([[0.7, 0.3]], dtype=torch.float64)
    assert float(center_classifier(s, 1, math.log(3) / 2 - 1e-9, 0.2)[0]) >= 0.5
    assert float(center_classifier(s, 1, math.log(3) / 2 + 1e-6, 0.2)[0]) < 0.5


def test_fixed_wb_variant_keeps_wb_at_one() -> None:
    model = _toy()
    pos, neg = _margin_data(model)
    fixed = SwitchGates(model, ["1"]).fit(pos, neg, target=1, steps=60, train_wb=False, random_seeds=())
    trained = SwitchGates(model, ["1"]).fit(pos, neg, target=1, steps=60, random_seeds=())
    assert fixed.w_b == 1.0 and fixed.params["train_wb"] is False
    assert trained.w_b != 1.0


def test_positives_push_nothing_while_they_hold() -> None:
    """The asymmetry: with every gate open the positives' y_b is exactly 1, so their fit term
    has zero gradient; only the negatives move the gates."""
    model = _toy()
    pos, neg = _margin_data(model)
    with torch.no_grad():
        sd = float(model(torch.cat([pos, neg])).softmax(1).var().sqrt())
    grads = {}
    for side, x, y in (("pos", pos, 1.0), ("neg", neg, 0.0)):
        gate = torch.ones(6, requires_grad=True)
        with _gated(model, {"1": gate}):
            yb = center_classifier(model(x).softmax(1), 1, 1.0, sd)
        ((y - yb) ** 2).sum().backward()
        assert gate.grad is not None
        grads[side] = gate.grad
    assert bool((grads["pos"] == 0).all())
    assert float(grads["neg"][:2].abs().sum()) > 0  # the negatives reach the core units


def test_tuned_alpha_keeps_the_core_and_reaches_the_target() -> None:
    model = _toy()
    pos, neg = _margin_data(model)
    res = SwitchGates(model, ["1"]).tune_alpha(pos, neg, 1, alpha_range=(1e-4, 1.0), max_fits=4, steps=150,
                                               random_seeds=(0, 1))
    search = res.params["alpha_search"]
    assert 1 < len(search) <= 4 and search[0]["alpha"] == 1e-4
    assert res.params["target_reached"] and res.params["alpha_rule"] == "y_b >= 0.5"
    assert res.kept["1"] == [0, 1] and res.holding_rate_yb >= 0.995
    assert res.params["alpha"] == max(t["alpha"] for t in search if t["met"])
    assert not all(t["met"] for t in search)  # the bracket's top closes the core: the search saw both sides
    assert len(res.random_holding_rates_yb) == len(res.random_holding_rates) == 2
    with pytest.raises(UsageError, match="rule"):
        SwitchGates(model, ["1"]).tune_alpha(pos, neg, 1, rule="median")
