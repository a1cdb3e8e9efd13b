"""Stage 1, study file -> prepared study: the YAML schema validated into typed sections
(:mod:`nas.study.config`), the checks that need the space and the fixed trials
(:mod:`nas.study.prepare`), the budget gate (:mod:`nas.study.budget`) and ``nas check``'s dry
run (:mod:`nas.study.check`)."""
