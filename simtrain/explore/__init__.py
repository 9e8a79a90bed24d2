"""Explore layer: many simulations. Layout sweeps over a grid of overrides (`sweep/`: grid,
per-point evaluation, the search's bound, local and Ray executors, CSV/Parquet output) and
the best-layout search with its pruning rules (`search.py`).
May import every layer below it (scenario ... analysis); never plots or commands.
"""
