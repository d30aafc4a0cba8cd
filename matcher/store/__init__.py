"""The season store: the LMDB shard format (one environment per season), the library of seasons a
version holds, the shared segments found between episodes, and ingest (files -> shard). It uses the
engine to fingerprint and serves the engine's lookups; it knows nothing of HTTP or pickles.
"""
