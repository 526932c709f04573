"""``recflow api``: the online service over the champion (or a named run), hot-swapped on promotion.

* ``versions``: one served version, loaded from the very files the champion bundle holds (the
  run record's catalogue, index, scorer and model folders), with every warm user's top-K
  computed at load time; it answers every query without touching another version.
* ``sources``: where the alias points (the champion records recflow writes, or the MLflow
  registry alias itself) and the files a pointer names.
* ``service``: the one reference requests read, the poller that loads a new version beside the
  old one and swaps that reference.
* ``app``: the FastAPI routes (JSON in, JSON out, errors a person can act on).

Same layer as ``recflow.cli`` (the top): it may import ``recflow.experiments`` (records, never
MLflow on the request path), ``recflow.runtime`` and ``recflow.retrieval``.
"""
