"""BatchNorm recalibration of a subnet cut from a supernet.

The running statistics a supernet keeps are averages over every subnet it trained, so they fit
none of them: each extracted subnet re-estimates its own from a few training batches before it is
evaluated (OFA uses 2,000 images, AttentiveNAS 64 batches; the count is a setting).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


@torch.no_grad()
def recalibrate(net: nn.Module, batches: Iterable[Tensor]) -> int:
    """Replace the running statistics of every BatchNorm in ``net`` by their exact average over
    ``batches`` (each [B, 3, H, W], ready for the network) and leave ``net`` in eval mode.

    Only the BatchNorms run in training mode (dropout stays off), and each batch counts by its
    size through a cumulative average, so the result depends only on the images. Returns the
    number of images used; with none the statistics are left as they were.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    batches = list(batches)
    net.eval()
    if not batches or not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    # A cumulative average weighs batches equally; weigh images equally by running one batch of
    # all of them when they share a size, else batch by batch.
    if len({tuple(b.shape[1:]) for b in batches}) == 1:
        net(torch.cat(batches))
    else:
        for x in batches:
            net(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    net.eval()
    return sum(len(b) for b in batches)
