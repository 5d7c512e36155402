"""Methods that ask the model itself: attributions, interventions, core units, factors.

Each binds a model in its constructor (or takes it first) and does its work in one verb; hooks
exist only inside the call.

- :class:`InfluentialScores`          influential scores, input and layer-to-layer (``influence``)
- :class:`PredictionGradients`        d y / d a, and unit scores (``gradients``)
- :func:`class_influence_scores`, :func:`class_gradient_scores`, :func:`layer_influence`
                                      class-level matrices for the graph's edges (``aggregate``)
- :class:`Intervention`               knockout and activate-only (``interventions``)
- :func:`knockout_curve`, :func:`activate_only_sweep`, :func:`pg_ranking`   (``experiments``)
- :class:`SwitchGates`                core units by Switch Gates (``switchgate``)
- :func:`coupled_nmf`, :func:`activation_matrices`, :func:`spectra`   coupled NMF (``factorize``)
- :func:`characteristic_feature`, :func:`perturb_toward`, :func:`single_step_sweep`,
  :func:`removal_curve`               prediction-gradient queries (``query``)
- :func:`rank_experiment`             the influential-scores paper's rank check (``rank``)

Names are resolved on first use (PEP 562), like :mod:`deepatlas.ingest`.

Examples
--------
>>> from deepatlas.explain import InfluentialScores, Intervention
>>> InfluentialScores.__name__, Intervention.__name__
('InfluentialScores', 'Intervention')
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "InfluentialScores": "influence", "RULES": "influence",
    "PredictionGradients": "gradients", "unit_scores": "gradients",
    "class_gradient_scores": "aggregate", "class_influence_scores": "aggregate", "layer_influence": "aggregate",
    "Intervention": "interventions", "UnitSet": "interventions", "UnitStats": "interventions",
    "parse_units": "interventions", "unit_statistics": "interventions",
    "activate_only_sweep": "experiments", "knockout_curve": "experiments", "pg_ranking": "experiments",
    "SwitchGates": "switchgate", "SwitchGateResult": "switchgate", "holding_rate": "switchgate",
    "balanced_holding_rate": "switchgate", "yb_holding_rate": "switchgate",
    "CoupledNMF": "factorize", "activation_matrices": "factorize", "coupled_nmf": "factorize", "spectra": "factorize",
    "Feature": "query", "characteristic_feature": "query", "perturb_toward": "query", "removal_curve": "query",
    "single_step_sweep": "query",
    "rank_experiment": "rank",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'deepatlas.explain' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"deepatlas.explain.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
