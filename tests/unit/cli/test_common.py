"""The shared --model/--data flags: parsing, one-line errors, and no torch import to declare them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepatlas.cli._common import model_options
from deepatlas.errors import UsageError


def test_input_size_mean_std_and_class_names() -> None:
    assert model_options(input_size="224")["input_shape"] == [0, 224, 224]
    assert model_options(input_size="32x48")["input_shape"] == [0, 32, 48]
    assert model_options(input_size="3x224x224")["input_shape"] == [3, 224, 224]
    got = model_options(mean="0.5", std="0.229,0.224,0.225", class_names="cat, dog")
    assert got["mean"] == 0.5 and got["std"] == [0.229, 0.224, 0.225] and got["class_names"] == ["cat", "dog"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": "big"}, "--input-size takes"),
        ({"input_size": "3x0x4"}, "positive sizes"),
        ({"input_size": "1x2x3x4"}, "positive sizes"),
        ({"mean": "a,b"}, "--mean takes"),
        ({"std": ","}, "--std takes"),
        ({"class_names": "cat,cat"}, "distinct"),
        ({"class_names": "cat,,dog"}, "non-empty"),
    ],
)
def test_bad_flags_are_one_usage_error(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        model_options(**kwargs)  # type: ignore[arg-type]


def test_declaring_the_ingest_command_imports_no_torch() -> None:
    src = Path(__file__).resolve().parents[3] / "src"
    code = "import sys; import deepatlas.cli.ingest; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(src)},
                         check=True)
    assert out.stdout.strip() == "False"


def _terminated(tmp_path: Path, on_term: str) -> tuple[int, str, str, float]:
    """Run a script that installs the CLI's handlers, sleeps, and on SIGTERM runs ``on_term``
    (indented lines); send SIGTERM once it is ready, with a 1 s stop grace. Returns the exit
    code, stdout, stderr and the seconds from the signal to the exit."""
    import signal
    import time

    script = tmp_path / "slow.py"
    script.write_text(
        "import time\n"
        "from deepatlas import stopping\n"
        "from deepatlas.cli._common import Terminated, install_signal_handlers\n"
        "stopping.CLEANUP_GRACE_S = 30\n"
        "install_signal_handlers()\n"
        "try:\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "except Terminated:\n" + on_term)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DEEPATLAS_TERM_GRACE": "1"})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, errs = proc.communicate(timeout=30)
    return proc.returncode, out, errs, time.monotonic() - t0


def test_sigterm_stops_the_process_even_when_the_clean_up_hangs(tmp_path: Path) -> None:
    code, out, errs, took = _terminated(tmp_path, "    print('cleaning up', flush=True)\n"
                                                  "    time.sleep(60)  # a stop stuck before any clean-up (a native call)\n")
    assert code == 143 and "cleaning up" in out
    assert "still running 1 s after the request" in errs and took < 30


def test_a_clean_up_that_has_begun_gets_its_own_time(tmp_path: Path) -> None:
    code, out, errs, _ = _terminated(tmp_path, "    stopping.cleanup_begins()\n"
                                               "    time.sleep(3)  # longer than the stop grace, shorter than the clean-up's\n"
                                               "    print('cleaned', flush=True)\n"
                                               "    raise SystemExit(143)\n")
    assert code == 143 and "cleaned" in out and "still running" not in errs
