"""Analyses of training runs: `python -m analysis COMMAND RUN...`; each computation returns a DataFrame."""
