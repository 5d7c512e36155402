"""Where deepatlas keeps its files.

``DEEPATLAS_HOME`` (default ``~/.deepatlas``) is the state directory::

    neo4j/        the managed server's home: conf/, data/, logs/, run/ (pid file)
    neo4j/password        the generated password, mode 0600
    models/       checkpoints made by `deepatlas train` and the demo
    out/          figures and reports

``DEEPATLAS_CACHE`` (default ``~/.cache/deepatlas``) holds the Neo4j jars resolved from Maven
Central, shared by every state directory so a second start needs no network.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "home_dir", "models_dir", "out_dir"]


def home_dir() -> Path:
    return Path(os.environ.get("DEEPATLAS_HOME", Path.home() / ".deepatlas")).expanduser()


def cache_dir() -> Path:
    return Path(os.environ.get("DEEPATLAS_CACHE", Path.home() / ".cache" / "deepatlas")).expanduser()


def models_dir() -> Path:
    return home_dir() / "models"


def out_dir() -> Path:
    return home_dir() / "out"
