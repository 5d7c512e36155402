"""Hypothesis-generated bad input: parsers either return a typed value or raise UsageError."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepatlas.db.runs import validate_run_name
from deepatlas.db.templates import load_template, parse_param_value
from deepatlas.errors import DataError, UsageError
from deepatlas.explain.interventions import parse_units


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.sampled_from(["str", "int", "float", "bool"]))
def test_param_values_parse_or_refuse(value: str, kind: str) -> None:
    try:
        out = parse_param_value("p", value, kind)
    except UsageError as exc:
        assert "parameter p must be" in str(exc)
    else:
        assert isinstance(out, {"str": str, "int": int, "float": float, "bool": bool}[kind])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4))
def test_template_bind_never_passes_unknown_keys(raw: dict[str, str]) -> None:
    t = load_template("class_drivers")
    try:
        bound = t.bind(raw)
    except UsageError:
        return
    assert set(bound) == set(t.params)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_run_names_accept_only_the_safe_alphabet(name: str) -> None:
    try:
        validate_run_name(name)
    except UsageError:
        return
    assert name and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_unit_lists_parse_or_refuse(text: str) -> None:
    try:
        units = parse_units(text)
    except UsageError:
        return
    assert units and all(isinstance(i, int) and i >= 0 for v in units.values() for i in v)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_as_idx_are_refused_cleanly(blob: bytes) -> None:
    import tempfile
    from pathlib import Path

    from deepatlas.data.idx import read_idx

    with tempfile.TemporaryDirectory() as d:
        for name, payload in (("x", blob), ("x.gz", gzip.compress(blob))):
            p = Path(d) / name
            p.write_bytes(payload)
            try:
                arr = read_idx(p)
            except DataError:
                continue
            assert isinstance(arr, np.ndarray)  # a valid IDX by chance: then the shape adds up


@pytest.mark.parametrize("cut", [1, 5, 17, 100])
def test_truncated_real_looking_idx(tmp_path, cut: int) -> None:  # type: ignore[no-untyped-def]
    from deepatlas.data.idx import read_idx

    arr = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    raw = bytes([0, 0, 8, 3]) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()
    (tmp_path / "t.gz").write_bytes(gzip.compress(raw[:-cut]))
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t.gz")
