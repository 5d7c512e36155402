"""Workflows: one function per user-level job, called by the CLI and by scripts.

The only layer that uses both the computing layers (ingest, explain, graphops) and ``db``.
Functions never print; progress goes through a ``progress(stage, advance, total)`` callback.

- :mod:`build`        train the reference model, ingest a run
- :mod:`analysis`     communities, overlap, centrality, audits, export
- :mod:`experiments`  knockout / activate-only experiments recorded as Experiment nodes
"""
