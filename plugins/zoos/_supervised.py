"""The training loop of the CNN zoos that regress continuous targets (``cosmo_cnn``, ``galaxy_cnn``).

AdamW with a one-cycle learning rate, shuffled mini-batches from a seeded
generator, optional random square symmetries (the maps and galaxy images
have no preferred orientation), and the weights of the epoch with the lowest
validation loss.  The two zoos had grown their own copies of this loop; they
differed only in the loss, the validation loss and whether a skipped
one-example batch advances the schedule, which are the parameters here.
The batch order's seed comes from the caller (derived with
:func:`simbench.seeding.derive_seed`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._models import random_square_symmetry


def train_best_epoch(
    model: nn.Module,
    zoo: Any,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    val_loss: Callable[[nn.Module], float],
    seed: int,
    device: Any,
    advance: Callable[[int], None],
    step_on_skipped_batch: bool = False,
) -> nn.Module:
    """Train ``model`` for ``zoo.epochs`` epochs; return it in eval mode with its best validation epoch's weights.

    ``zoo`` supplies ``lr``, ``weight_decay``, ``batch_size``, ``epochs`` and
    ``augment``.  ``loss(model, xb, yb)`` is the training loss of a batch
    already on ``device``; ``val_loss(model)`` the validation loss.  A batch
    of one example is skipped (BatchNorm needs two); ``step_on_skipped_batch``
    says whether the learning-rate schedule still advances for it.
    """
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=zoo.lr, weight_decay=zoo.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / zoo.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=zoo.lr, total_steps=zoo.epochs * steps_per_epoch)
    best = (math.inf, copy.deepcopy(model.state_dict()))
    for _ in range(zoo.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(order), zoo.batch_size):
            idx = order[i : i + zoo.batch_size]
            if len(idx) < 2:  # BatchNorm needs two examples
                if step_on_skipped_batch:
                    sched.step()
                continue
            xb = x_train[idx]
            if zoo.augment:
                xb = random_square_symmetry(xb, gen)
            batch_loss = loss(model, xb.to(device), y_train[idx].to(device))
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            sched.step()
        score = val_loss(model)
        if score < best[0]:
            best = (score, copy.deepcopy(model.state_dict()))
        advance(1)
    model.load_state_dict(best[1])
    return model.eval()
