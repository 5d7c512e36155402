"""Issue 25.15: the Neo4j Browser saved scripts (`deepatlas query browser`) are built from the
template library, and every parameter they read is one a user sets.

Browser imports a dropped zip's ``.cypher`` files as saved scripts named by their first
``//`` line, in a sidebar folder named after the zip folder, sorted by name, and runs a script
as several statements where it has ``;`` outside comments (neo4j-browser FileDrop,
SavedScripts). The e2e test tests/e2e/test_browser.py clicks them in a real Browser.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.cypher.browser_scripts import (
    FOLDER,
    PARAMS,
    QUESTIONS,
    ZIP_NAME,
    browser_scripts,
    cypher_string,
    scripts_zip,
)
from deepatlas.db.templates import load_template
from deepatlas.errors import UsageError

README = Path(__file__).resolve().parents[3] / "README.md"
PARAM_LINE = re.compile(r"^:param (?:(\w+)|\[(\w+)\]) => (.+);$")


def body(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def set_by(text: str) -> dict[str, str]:
    """The parameters a script of ``:param`` lines sets, name to right-hand side."""
    out = {}
    for line in body(text).splitlines():
        m = PARAM_LINE.match(line.strip())
        assert m, f"not a :param line Browser takes: {line!r}"
        name = m.group(1) or m.group(2)
        if m.group(2):  # :param [name] => { ... RETURN x AS name }: the query names its column so
            assert re.fullmatch(r"\{ MATCH .* RETURN \S+ AS " + name + r"(?: ORDER BY .*)? \}", m.group(3)), line
        out[name] = m.group(3)
    return out


@pytest.mark.parametrize("options", [{}, {"run": "fashion-test", "class_name": "Sandal", "k": 5, "community": 2}])
def test_every_parameter_a_script_reads_is_set_by_script_2(options: dict[str, object]) -> None:
    scripts = browser_scripts(**options)  # type: ignore[arg-type]
    params = set_by(scripts[1].text)
    assert set(params) == set(PARAMS)
    for script in scripts:
        assert script.used_params <= set(params), (script.title, script.used_params - set(params))
    if options:
        assert params == {"run": "'fashion-test'", "class": "'Sandal'", "k": "5", "community": "2"}
    else:  # asked of the server: the newest complete run and its first class
        assert params["run"].startswith("{ MATCH (r:Run {status: 'complete'})")
        assert params["k"] == "10"


def test_the_readme_params_and_script_2_cover_every_script() -> None:
    section = README.read_text().split("### Neo4j Browser", 1)[1].split("\n### ", 1)[0]
    readme = set(re.findall(r"^:param (\w+) =>", section, flags=re.M))
    assert {"run", "class", "k"} <= readme
    assert "deepatlas query browser" in section
    for script in browser_scripts():
        assert script.used_params <= readme | set(set_by(browser_scripts()[1].text)), script.title


def test_questions_are_the_templates_verbatim_under_a_title() -> None:
    scripts = browser_scripts()
    assert [s.template for s in scripts[2:]] == [q[1] for q in QUESTIONS]
    for script in scripts[2:]:
        template = load_template(str(script.template))
        assert script.text.endswith(template.text), script.title  # generated, so never drifts
        assert script.used_params == template.used_params
        assert ";" not in body(script.text), script.title  # Browser runs it as one statement
        head = script.text[: -len(template.text)]
        assert all(line.startswith("//") for line in head.splitlines()), head
    wanted = {"class_drivers", "confused_pairs", "confused_pairs_shared", "communities", "community_members"}
    assert wanted <= {s.template for s in scripts}
    assert scripts[0].template == "start_here" and scripts[0].used_params == set()
    assert "MATCH (r:Run {status: 'complete'})" in scripts[0].text


def test_titles_are_numbered_in_the_order_browser_sorts_them() -> None:
    scripts = browser_scripts()
    for i, script in enumerate(scripts, start=1):
        assert script.text.splitlines()[0] == f"// {script.title}"  # the name Browser shows
        assert script.title.startswith(f"{i} ")
        assert len(script.title) <= 28, script.title  # what the sidebar shows untruncated
        assert script.path.startswith(f"{FOLDER}/{i}-") and script.path.endswith(".cypher")
    assert sorted(s.title for s in scripts) == [s.title for s in scripts]
    assert len({s.path for s in scripts}) == len(scripts)


def test_the_zip_holds_the_scripts_under_one_folder_and_is_reproducible() -> None:
    scripts = browser_scripts()
    data = scripts_zip(scripts)
    assert data == scripts_zip(browser_scripts())
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == [s.path for s in scripts]
        assert [zf.read(s.path).decode() for s in scripts] == [s.text for s in scripts]


def test_values_are_quoted_as_cypher_strings() -> None:
    assert cypher_string("it's") == "'it\\'s'"
    assert cypher_string("a\\b") == "'a\\\\b'"
    script = browser_scripts(class_name="carpenter's kit")[1]
    assert set_by(script.text)["class"] == "'carpenter\\'s kit'"


@pytest.mark.parametrize(("options", "message"), [
    ({"run": "a b"}, "not a run name"),
    ({"run": "x'}) DETACH DELETE r //"}, "not a run name"),
    ({"class_name": "Sandal\n:param k => 1"}, "one line"),
    ({"k": 0}, "1..100000"),
    ({"community": -1}, "community index"),
])
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        browser_scripts(**options)  # type: ignore[arg-type]


def test_cli_writes_the_zip_and_says_what_to_do(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["query", "browser", "--out", str(tmp_path / "new"), "--class", "Sandal"])
    assert out.exit_code == 0, out.output
    target = tmp_path / "new" / ZIP_NAME
    assert target.read_bytes() == scripts_zip(browser_scripts(class_name="Sandal"))
    text = " ".join(out.output.split())
    assert str(target) in text.replace(" ", "") or str(target) in text
    assert "Drop it onto the Neo4j Browser window" in text


@pytest.mark.parametrize("args", [["--out", "FILE"], ["--run", "a b"], ["-k", "0"]])
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "FILE").write_text("")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    out = CliRunner().invoke(app, ["query", "browser", *args])
    assert out.exit_code == 1, out.output
    assert out.output.startswith("error:") and len(out.output.strip().splitlines()) == 1, out.output
    assert not (tmp_path / ZIP_NAME).exists()


def test_the_command_does_not_import_torch(tmp_path: Path) -> None:
    probe = (
        "import json, sys\nfrom deepatlas.cli.app import app\n"
        "try:\n    app(sys.argv[1:], standalone_mode=False)\nexcept BaseException:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib', 'scipy'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, "query", "browser", "--out", str(tmp_path)],
                          capture_output=True, text=True, check=True)
    assert (tmp_path / ZIP_NAME).exists()
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
