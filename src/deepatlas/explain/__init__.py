"""Methods that ask the model itself: interventions (knockout, activate-only), attributions.

Each binds a model in its constructor and does its work in one verb; hooks exist only inside
the call.
"""

from __future__ import annotations

from deepatlas.explain.interventions import Intervention, UnitSet, parse_units, unit_statistics

__all__ = ["Intervention", "UnitSet", "parse_units", "unit_statistics"]
