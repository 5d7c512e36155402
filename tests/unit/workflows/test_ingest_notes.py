"""What the ingest summary warns about without a database: accuracy near chance."""

from __future__ import annotations

from deepatlas.workflows.build import _near_chance


def test_accuracy_near_chance_is_a_warning_and_a_trained_model_is_not() -> None:
    note = _near_chance(0.0995, 10)
    assert note is not None and "accuracy 10.0%" in note and "1/10 = 10.0%" in note
    assert _near_chance(0.149, 10) is not None
    assert _near_chance(0.16, 10) is None
    assert _near_chance(0.91, 10) is None
    assert _near_chance(0.0, 1) is None  # one class: no chance level to speak of
