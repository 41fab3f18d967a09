"""Datasets of the two tasks: generation, validation, loading, filters and variants."""
