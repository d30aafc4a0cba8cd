"""The matcher: clips in, answers out, in four layers that import downwards only.

``engine`` (decode to decision, pure functions) <- ``store`` (the season shard format, the library
of seasons, ingest) <- ``legacy`` (the pickle databases, removable as a unit) <- ``service`` (the
HTTP API). ``cli`` and ``synth`` (generated test audio) sit on top. The contracts are import-linter's,
in ``pyproject.toml``.
"""
