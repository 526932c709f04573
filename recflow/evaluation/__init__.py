"""Judging a fitted model: full-ranking evaluation, metric specs, bootstrap CIs, plots."""
