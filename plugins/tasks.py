"""Built-in tasks: ``classification`` and ``regression``.

A task says how two models' outputs agree on a probe set (the M x M matrix
benchmarks read as ``view.agreement``) and how each model scores against the
targets (``view.accuracy``, recorded under the task's ``score_name``).  A
dataset names its task in ``DataSplits.task``.  Light to import: torch is
imported inside the computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import simbench


@dataclass(frozen=True)
class Classification(simbench.Task):
    """Argmax predictions: agreement = share of probes on which two models predict the same class; score = accuracy."""

    name = "classification"
    description = "agreement: share of probes with the same argmax prediction; score: accuracy"
    score_name = "accuracy"

    def agreement(self, outputs: Any, targets: Any) -> tuple[Any, Any]:
        """One batched one-hot product: ``agreement[i, j]`` = mean over probes of [pred_i == pred_j]."""
        import torch

        outputs = outputs.to(torch.float64)
        m, n = outputs.shape[0], outputs.shape[1]
        preds = outputs.argmax(-1)  # [M, n]
        onehot = torch.nn.functional.one_hot(preds, outputs.shape[-1]).to(torch.float64)  # [M, n, C]
        flat = onehot.reshape(m, -1)
        agreement = flat @ flat.T / n
        accuracy = (preds == targets.to(preds.device)).to(torch.float64).mean(1)
        return agreement, accuracy


@dataclass(frozen=True)
class Regression(simbench.Task):
    """Real-valued outputs: agreement = 1 - mean squared difference of two models' predictions / target variance
    (1 = identical predictions; averaged over targets); score = R² (averaged over targets)."""

    name = "regression"
    description = "agreement: 1 - mean squared prediction difference / target variance; score: R^2"
    score_name = "r2"

    def agreement(self, outputs: Any, targets: Any) -> tuple[Any, Any]:
        import torch

        outputs = outputs.to(torch.float64)
        m, n = outputs.shape[0], outputs.shape[1]
        y = targets.to(torch.float64).reshape(n, -1)
        out = outputs.reshape(m, n, -1)
        var = y.var(0, unbiased=False).clamp_min(1e-12)  # per target
        sq = out.pow(2).sum(1)  # [M, T]
        cross = torch.einsum("ant,bnt->abt", out, out)
        msd = (sq[:, None, :] + sq[None, :, :] - 2 * cross) / n  # mean squared difference per target
        agreement = 1.0 - (msd / var).mean(-1)
        resid = ((out - y[None]) ** 2).mean(1)
        r2 = (1.0 - resid / var).mean(-1)
        return agreement, r2


@simbench.hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    """Register the built-in tasks."""
    register(Classification)
    register(Regression)
