"""Weight sharing: one supernet over a search space, trained once, from which every candidate
is cut with its weights (:mod:`nas.supernet.network`, naming and slicing in
:mod:`nas.supernet.layout`)."""
