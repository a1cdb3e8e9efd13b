"""Stage 2, the search driver: Optuna's ask/tell over Ray tasks (:mod:`nas.search.runner`),
the storage and every record of a trial's outcome (:mod:`nas.search.ledger`), run-folder and
study leases (:mod:`nas.search.lease`), the Ray task of one trial (:mod:`nas.search.worker`),
early stopping (:mod:`nas.search.pruning`), samplers of our own (:mod:`nas.search.samplers`)
and the kill points of the fault tests (:mod:`nas.search.faults`)."""
