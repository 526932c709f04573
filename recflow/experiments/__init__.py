"""Experiment tracking: MLflow runs, tuning studies, comparison, trends, the champion, its bundle and pyfunc, gc."""
