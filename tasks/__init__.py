"""Thin Prefect tasks: each reads descriptors, calls the library, writes one content-addressed folder."""
