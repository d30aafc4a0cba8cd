"""The fingerprint engine, the season shard store, ingest, identify and the HTTP service."""
