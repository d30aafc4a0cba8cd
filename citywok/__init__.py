"""CityWok: which episode, and where in it, is this clip from?

One import namespace; the repository's top-level folders are mapped into it by ``pyproject.toml``:

- ``citywok.matcher`` (``matcher/``): the fingerprint engine, the season store, legacy pickle
  support and the HTTP service, layered in that order (``make lint`` checks the contracts).
- ``citywok.fetcher`` (``fetcher/``): shard archives, the object-store client and the sync loop.
- ``citywok.operator`` (``operator/``): the kopf operator for ``FingerprintDB`` resources.
- ``citywok.layout``: the volume layout, the only contract between fetcher and matcher.
- ``citywok.settings``, ``citywok.cli``: settings from flags and the environment, the ``citywok``
  command.
"""

__version__ = "0.1.0"
