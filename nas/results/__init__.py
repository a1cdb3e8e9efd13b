"""Stage 4, results: trial outcomes as types (:mod:`nas.results.outcome`), run folders opened
and their trials as a DataFrame, status and trial export (:mod:`nas.results.runs`), Pareto
fronts and hypervolume (:mod:`nas.results.pareto`) and ablation tables against the papers
(:mod:`nas.results.ablation`)."""
