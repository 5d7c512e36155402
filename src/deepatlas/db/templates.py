"""The Cypher template library (``deepatlas/cypher/*.cypher``), loaded by one function.

A template file starts with comment lines::

    // name: class_drivers
    // description: The hidden neurons most correlated with a class.
    // params: run (str), class (str), k (int)

and its body uses only ``$parameters``. Every template is runnable as-is in Neo4j Browser after
``:param run => 'my-run'`` (etc.). Templates run in read transactions.

The statements deepatlas itself runs (writing runs, analytics write-backs, counts ...) live
beside them in ``cypher/internal/NAME.cypher`` with the same header, loaded by :func:`cypher`.
Cypher cannot parameterise a label, a relationship type or a schema name; where a statement
needs one, its body says ``__label__`` (etc.), declared in a ``// placeholders:`` line, and the
caller passes it: only identifiers from the schema's allow-list and plain ``SET e.x = row.x``
lists are accepted, so no value can change a statement's meaning.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

from deepatlas.errors import NotFoundError, UsageError

__all__ = ["Template", "cypher", "internal_statements", "list_templates", "load_template", "parse_param_value"]

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_HEADER = re.compile(r"^//\s*(name|description|params):\s*(.*)$")
_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


@dataclass(frozen=True)
class Template:
    """One parsed template.

    Attributes
    ----------
    name : str
    description : str
    text : str
        The whole file, comments included (Neo4j ignores ``//`` lines).
    params : dict of str to str
        Declared parameter names and types (``str``, ``int``, ``float``, ``bool``).
    """

    name: str
    description: str
    text: str
    params: dict[str, str]

    @property
    def used_params(self) -> set[str]:
        """The ``$names`` the body refers to (comments excluded)."""
        body = "\n".join(line for line in self.text.splitlines() if not line.lstrip().startswith("//"))
        return set(_PARAM.findall(body))

    def bind(self, raw: dict[str, str]) -> dict[str, object]:
        """Convert ``-p key=value`` strings to the declared types; reject unknown or missing keys."""
        unknown = set(raw) - set(self.params)
        if unknown:
            raise UsageError(
                f"template {self.name} takes no parameter {', '.join(sorted(unknown))}; "
                f"it takes: {', '.join(self.params) or 'none'}"
            )
        missing = [p for p in self.params if p not in raw]
        if missing:
            raise UsageError(f"template {self.name} needs -p {missing[0]}=...")
        return {k: parse_param_value(k, v, self.params[k]) for k, v in raw.items()}


def parse_param_value(key: str, value: str, kind: str) -> object:
    """Convert one ``-p`` value to ``kind``; a bad value raises UsageError naming the key."""
    try:
        if kind == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        out = _TYPES[kind](value)
    except (ValueError, KeyError):
        raise UsageError(f"parameter {key} must be {kind}, got {value!r}") from None
    if kind == "int" and not -(2**63) <= int(out) < 2**63:  # Cypher integers are 64-bit
        raise UsageError(f"parameter {key} must be a 64-bit integer, got {value[:30]}{'...' if len(value) > 30 else ''}")
    return out


def _parse(name: str, text: str) -> Template:
    meta: dict[str, str] = {}
    for line in text.splitlines():
        m = _HEADER.match(line.strip())
        if m:
            meta[m.group(1)] = m.group(2).strip()
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in meta.get("params", "").split(","))):
        m = re.fullmatch(r"([A-Za-z_]\w*)\s*\((\w+)\)", item)
        if not m or m.group(2) not in _TYPES:
            raise ValueError(f"template {name}: bad params entry {item!r}")
        params[m.group(1)] = m.group(2)
    return Template(meta.get("name", name), meta.get("description", ""), text, params)


def list_templates() -> list[Template]:
    """Every shipped template, sorted by name."""
    folder = resources.files("deepatlas.cypher")
    return sorted(
        (_parse(p.name[: -len(".cypher")], p.read_text()) for p in folder.iterdir() if p.name.endswith(".cypher")),
        key=lambda t: t.name,
    )


def load_template(name: str) -> Template:
    """Load one template by name.

    Raises
    ------
    NotFoundError
        Unknown name; the message lists the valid ones.
    """
    templates = {t.name: t for t in list_templates()}
    if name not in templates:
        raise NotFoundError(f"no template {name!r}; templates: {', '.join(templates)}")
    return templates[name]


_PLACEHOLDER = re.compile(r"__([a-z][a-z0-9_]*?)__")
_SAFE_PART = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*(?:[ ,=.]+[A-Za-z_][A-Za-z0-9_]*)*)?\Z")


@functools.cache
def _internal(name: str) -> tuple[str, frozenset[str]]:
    try:
        text = resources.files("deepatlas.cypher").joinpath("internal", f"{name}.cypher").read_text()
    except FileNotFoundError:
        raise NotFoundError(f"no internal statement {name!r}") from None
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//")).strip()
    return body, frozenset(_PLACEHOLDER.findall(body))


def cypher(name: str, **parts: str) -> str:
    """The internal statement ``cypher/internal/NAME.cypher`` (header comments dropped), its
    ``__placeholders__`` filled from ``parts``.

    Raises
    ------
    NotFoundError
        No such statement.
    ValueError
        A placeholder is missing or extra, or a value is not a plain identifier list (a
        programming error, never user input: labels come from the schema's allow-list).
    """
    body, wanted = _internal(name)
    if set(parts) != wanted:
        raise ValueError(f"statement {name} takes placeholders {sorted(wanted)}, got {sorted(parts)}")
    for key, value in parts.items():
        if not _SAFE_PART.match(str(value)):
            raise ValueError(f"statement {name}: placeholder {key} must be identifiers, got {value!r}")
        body = body.replace(f"__{key}__", str(value))
    return body


def internal_statements() -> list[Template]:
    """Every internal statement, parsed like a template (params untyped), sorted by name."""
    folder = resources.files("deepatlas.cypher").joinpath("internal")
    out = []
    for p in folder.iterdir():
        if p.name.endswith(".cypher"):
            text = p.read_text()
            meta = {m.group(1): m.group(2).strip() for m in (_HEADER.match(line.strip()) for line in text.splitlines()) if m}
            params = {n.strip(): "any" for n in meta.get("params", "").split(",") if n.strip()}
            out.append(Template(meta.get("name", p.name[: -len(".cypher")]), meta.get("description", ""), text, params))
    return sorted(out, key=lambda t: t.name)
