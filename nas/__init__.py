"""The engine: profiling, export, studies, evaluators, latency oracles, reports and the CLI.

The only package that imports optuna, ray, fvcore, coremltools, pandas and plotly (lazily).
"""
