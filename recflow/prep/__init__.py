"""Turning canonical interactions into what models train on: splits, feature tables, sampled negatives."""
