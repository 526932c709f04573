"""After a pipeline run: what serves each model, and the champion that serves by default.

The flow's tail (``tasks/publish.py``) runs, in order:

1. ``catalogue.py``: the run's catalogue (id maps, titles, training counts, rated pairs;
   content-addressed under ``<root>/catalogue/<key>``, like a stage output);
2. ``index_logging.py``: every index into its model's nested MLflow run;
3. ``records.py``: ``<root>/serving/runs/<run_id>.json``, which files serve each model of the
   run, their metrics, the best model by ``serving.champion_metric`` and the model ``similar``
   uses (the one with an item index whose nearest movies share most genres);
   ``publish.py`` runs steps 1-3;
4. ``champion.py``: the best model packaged as an MLflow pyfunc (``bundle.py``), registered as
   ``recflow-<dataset>``, and the ``champion`` alias moved to it only when it beats the current
   champion under the same evaluation protocol, significantly so.

The CLI resolves the champion (or ``--run``) from those JSON records (``resolve.py``), never
importing MLflow, and reads the very files the pyfunc bundles. This ``__init__`` imports
nothing, so the CLI's path stays light.
"""
