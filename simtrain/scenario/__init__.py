"""Scenario layer: what the user asked for, checked once. TOML files and `--set` overrides
into frozen dataclasses, model shapes (catalog, Hugging Face config.json, Megatron-LM
flags), the TP x CP x PP x DP rank layout, units and the one-line errors.
Imports nothing else from simtrain: every other layer builds on it.
"""
