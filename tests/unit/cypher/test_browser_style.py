"""Issue 18.8: the shipped Neo4j Browser style parses the way Browser parses it.

``browser_parse`` follows neo4j-browser's ``GraphStyle.parse`` (src/.../graphStyle.ts): only
single quotes delimit strings (the quote characters are dropped), ``{``/``}`` outside them open
and close a rule, text outside rules (comments included) joins the next selector, and each
``key: value`` pair is split at every colon, keeping the first two pieces.
"""

from __future__ import annotations

import re
from importlib import resources


def browser_parse(text: str) -> dict[str, dict[str, str]]:
    inside_string = inside_props = False
    keyword = props = ""
    raw: dict[str, str] = {}
    for c in text:
        skip = True
        if c == "{":
            if not inside_string:
                inside_props = True
            else:
                skip = False
        elif c == "}":
            if not inside_string:
                inside_props = False
                raw[keyword] = props
                keyword = props = ""
            else:
                skip = False
        elif c == "'":
            inside_string = not inside_string
        else:
            skip = False
        if skip:
            continue
        if inside_props:
            props += c
        elif not re.match(r"\s", c):
            keyword += c
    rules: dict[str, dict[str, str]] = {}
    for selector, body in raw.items():
        rules[selector] = {}
        for prop in body.split(";"):
            parts = prop.split(":")
            if len(parts) >= 2 and parts[0] and parts[1]:
                rules[selector][parts[0].strip()] = parts[1].strip()
    return rules


def _shipped() -> str:
    return resources.files("deepatlas.cypher").joinpath("browser-style.grass").read_text()


def test_every_caption_survives_browsers_parser() -> None:
    rules = browser_parse(_shipped())
    assert rules["node.Neuron"]["caption"] == "{layer}/{index}"
    assert rules["node.Class"]["caption"] == "{name}"
    assert rules["node.Pixel"]["caption"] == "{y},{x}"
    assert rules["relationship"]["caption"] == "<type>"
    assert rules["relationship.COACTIVATES"]["caption"] == "r={r}"  # an edge says which number it shows
    assert rules["relationship.INFLUENCES"]["caption"] == "influence={score}"
    assert rules["node"]["diameter"] == "40px"  # the first selector is not swallowed by a leading comment
    for selector in rules:
        assert re.fullmatch(r"(node|relationship)(\.[A-Z_a-z]+)?", selector), selector


def test_the_parser_port_reproduces_the_reported_defect() -> None:
    # the file as it shipped before: double quotes and a colon inside the caption
    old = 'node.Neuron {\n  color: #68BDF6;\n  caption: "{layer}:{index}";\n}\n'
    assert browser_parse(old).get("node.Neuron", {}).get("caption") != "{layer}:{index}"
