"""Workflows: one function per user-level job, called by the CLI and by scripts.

The only layer that uses both the computing layers (ingest, explain, graphops) and ``db``.
Every function takes a :class:`deepatlas.workspace.Workspace` first (graph, run, model, data,
device, out folder, progress) and returns a :class:`deepatlas.workspace.Result` dataclass.
Functions never print; progress goes through ``ws.progress(stage, advance, total)``.

- :mod:`build`        train the reference model, ingest a run
- :mod:`analysis`     communities, overlap, centrality, audits, export
- :mod:`experiments`  knockout / activate-only experiments recorded as Experiment nodes
- :mod:`cores`        Switch Gates core units, coupled NMF factors and their comparison
- :mod:`explain`      one image's score maps, filter scores, features, perturbations
- :mod:`inspect`      what deepatlas can do with a model, before any real work
"""
