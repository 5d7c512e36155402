"""A first view for Neo4j Browser: saved scripts ("Local scripts") built from the template library.

Neo4j Browser 5 imports a ``.zip`` of ``.cypher`` files dropped onto its window as saved
scripts (``readZipFiles`` in neo4j-browser's FileDrop): each file becomes one script, named by
its first line when that line is a ``//`` comment, and filed in a sidebar folder named after the
file's folder inside the zip. The sidebar sorts a folder's scripts by name, so the titles start
with the step number. Nothing here needs a web server or the network (a ``:play`` guide would
need one: Browser fetches guides over HTTP from allow-listed hosts).

The scripts are generated, never copied: each question is a shipped template
(``deepatlas/cypher/NAME.cypher``) under a few header lines, and ``start_here`` lives beside this
module in ``browser/start_here.cypher``. Script 2 sets the Browser parameters every other script
uses (``:param run => ...``); without a chosen run it takes the newest complete run, and without a
chosen class that run's first class, by asking the server (``:param [run] => { ... }``).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from importlib import resources

from deepatlas.db.templates import cypher, load_template
from deepatlas.errors import UsageError

__all__ = ["FOLDER", "PARAMS", "ZIP_NAME", "Script", "browser_scripts", "cypher_string", "scripts_zip"]

FOLDER = "deepatlas"  # the sidebar folder the scripts land in
ZIP_NAME = "deepatlas-browser-scripts.zip"
PARAMS = ("run", "class", "k", "community")  # what script 2 sets; every other script uses only these

# (step, template, title, the analysis a question's rows come from): the questions, in sidebar order
QUESTIONS: tuple[tuple[int, str, str, str | None], ...] = (
    (3, "class_drivers", "What drives a class", None),
    (4, "confused_pairs", "Confused pairs", None),
    (5, "confused_pairs_shared", "Confused pairs' neurons", "deepatlas analyze overlap"),
    (6, "communities", "Communities", "deepatlas analyze communities"),
    (7, "community_members", "Community members", "deepatlas analyze communities"),
    (8, "class_list", "Classes and accuracy", None),
    (9, "layer_summary", "Layers and dead units", None),
)
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_RUN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@dataclass(frozen=True)
class Script:
    """One saved script: ``path`` inside the zip, ``title`` (its first line, the name Browser
    shows), ``text`` (the whole file) and the template it was built from (None for script 2)."""

    path: str
    title: str
    text: str
    template: str | None

    @property
    def used_params(self) -> set[str]:
        """The ``$names`` its statements use (comment lines excluded)."""
        body = "\n".join(line for line in self.text.splitlines() if not line.lstrip().startswith("//"))
        return set(_PARAM.findall(body))


def cypher_string(value: str) -> str:
    """``value`` as a single-quoted Cypher string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48].rstrip("-")


def _script(step: int, title: str, lines: list[str], body: str, template: str | None) -> Script:
    head = f"// {step} {title}"
    text = "\n".join([head, *(f"// {line}" if line else "//" for line in lines)]) + "\n" + body.rstrip("\n") + "\n"
    return Script(f"{FOLDER}/{step}-{_slug(title)}.cypher", head[3:], text, template)


def _set_params(run: str | None, class_name: str | None, k: int, community: int) -> Script:
    newest = cypher("browser_newest_run").strip()
    which = cypher("browser_named_run").strip().replace("RUN_LITERAL", cypher_string(run)) if run else newest
    lines = [
        (f":param run => {cypher_string(run)};" if run else
         f":param [run] => {{ {newest} {cypher('browser_run_param').strip()} }};"),
        (f":param class => {cypher_string(class_name)};" if class_name else
         f":param [class] => {{ {which} {cypher('browser_class_param').strip()} }};"),
        f":param k => {k};",
        f":param community => {community};",
    ]
    notes = [
        "Run this first (the triangle beside its name), then any script below: it sets the",
        "Browser parameters they read (:params lists them).",
        f"run: {cypher_string(run)}, named when these scripts were made." if run else
        "run: the newest complete run (the server answers when this script runs).",
        f"class: {cypher_string(class_name)}." if class_name else "class: that run's first class.",
        "Change one by typing it in the editor, e.g.  :param class => 'Sandal'",
        "(script 1 lists the runs and their classes).",
    ]
    return _script(2, "Set parameters", notes, "\n".join(lines), None)


def browser_scripts(run: str | None = None, class_name: str | None = None, k: int = 10, community: int = 0) -> list[Script]:
    """The saved scripts, in sidebar order: 1 start here, 2 set parameters, 3.. the questions.

    ``run``/``class_name`` fix script 2's values (else it asks the server for the newest run and
    its first class); ``k`` is how many rows the top-k questions show, ``community`` which
    community script 7 opens.

    Raises
    ------
    UsageError
        A run name that is not a run name, a class name with a line break, k outside 1..100000.
    """
    if run is not None and not _RUN_NAME.fullmatch(run):
        raise UsageError(f"--run {run!r} is not a run name (letters, digits, '-', '_', '.'; see `deepatlas runs list`)")
    if class_name is not None and (not class_name.strip() or any(c in class_name for c in "\r\n")):
        raise UsageError("--class must be one line of text, a class name such as Sandal")
    if not 1 <= k <= 100_000:
        raise UsageError(f"-k must lie in 1..100000, got {k}")
    if not 0 <= community < 2**31:
        raise UsageError(f"--community must be a community index (0, 1, ...), got {community}")
    start = resources.files("deepatlas.cypher").joinpath("browser", "start_here.cypher").read_text()
    scripts = [
        _script(1, "Start here: runs, classes", [
            "The complete runs, newest first: pick one with the :param line in the last column,",
            "or run script 2, which picks the newest. No parameters needed.",
        ], start, "start_here"),
        _set_params(run, class_name, k, community),
    ]
    for step, name, title, analysis in QUESTIONS:
        template = load_template(name)
        reads = ", ".join(f"${p}" for p in template.params)
        scripts.append(_script(step, title, [
            f"Reads {reads} (set by script 2; :params shows them).",
            *([f"No rows until  {analysis} --run RUN  has run."] if analysis else []),
            f"The template {name}: the same rows as  deepatlas query run {name}",
        ], template.text, name))
    return scripts


def scripts_zip(scripts: list[Script]) -> bytes:
    """The zip Browser imports when it is dropped onto its window (same bytes for same scripts)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for script in scripts:
            info = zipfile.ZipInfo(script.path, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, script.text)
    return buffer.getvalue()
