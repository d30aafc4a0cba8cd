"""Shard archives, the object-store client and the sync loop (init container or sidecar)."""
