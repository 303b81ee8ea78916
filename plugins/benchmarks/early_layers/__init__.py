"""Benchmark ``early_layers``: seed 003 §3.1 (Fig. 1) -- do generalising, memorising and random networks look
alike under CKA in their early layers although their function differs?

Seed 003 (*On the inadequacy of CKA as a measure of similarity in deep
learning*, ``/work/shared/seeds/003_0606242b8ab0131b.txt``) compares, layer
by layer, a network trained to generalise, one trained on permuted labels (it
memorises) and an untrained one, and reports high CKA in the early layers
although the filters, and the networks' use, differ.  Here every condition
has several seeds (zoo ``memorisation``; the models are the units): for every
readable layer the benchmark declares one ``M x M`` matrix of ``metric``
(default: the suite label ``linear_cka``) over all models on ``probe_set``,
and compares the CKA of pairs of models from two conditions (*cross*) with
that of pairs from one condition (*within*, the reference: two networks of
the same kind).

Pre-declared rule (parameters; their values are written into the records):

* *alike at a layer* (pair of conditions A, B): the mean cross CKA is
  ``>= high`` and ``>=`` the smallest within-condition CKA of A and of B (it
  lies inside the within-condition spread);
* *function differs*: the mean agreement (same predicted class) of cross
  pairs on the probes is ``< max_agreement``; for a pair with the
  generalising condition, the generalising models' test accuracy also exceeds
  the other condition's by ``>= min_gap`` with an exact one-sided
  permutation test over models at level ``alpha``;
* the memorising models must have memorised: mean accuracy on their own
  (permuted) training labels ``>= memorised`` (else the pair tests nothing);
* *reproduced* for a pair: alike at the first layer and function differs.
  ``alike_through`` reports how many layers from the first are alike.

Model-level test of the CKA gap, reported beside the rule: the exact
permutation test of the condition labels of the models of A and B (all
relabellings with the group sizes kept; random ``permutations`` when there
are more than 20 000), statistic = mean within CKA - mean cross CKA,
one-sided (``p_separates`` small: CKA does tell the two conditions apart).

Record scheme (``benchmark`` = the suite label):

==================  ============  ==========================  ============================================
statistic           group         model_a / model_b           value (``n``)
==================  ============  ==========================  ============================================
``cka``             layer name    model ids                   the metric, oriented (higher = more similar);
                                                              coords ``layer`` (0-based)
``cka_mean``,       layer name    conditions (A = B: within)  over the pairs (``n`` pairs); coords ``layer``
``cka_min``,
``cka_max``
``within_min``      layer name    conditions A, B (A != B)    smallest within CKA of A and of B
``alike``           layer name    conditions A, B             1 / 0 by the rule above
``p_separates``     layer name    conditions A, B             the permutation test's p
``test_accuracy``,  ``function``  model id                    accuracy on the probes (true labels) /
``train_accuracy``                                            on the labels it was trained with (buffer)
``accuracy_mean``   ``function``  condition                   mean test accuracy (``n`` models)
``memorised``       ``function``  condition                   mean train accuracy
``agreement_mean``  ``function``  conditions A, B             mean agreement of the pairs
``accuracy_gap``,   ``function``  generalising, condition     mean accuracy difference and its p
``p_accuracy``
``threshold``       ``settings``  ``model_a`` names it        a pre-declared threshold
==================  ============  ==========================  ============================================

A layer whose matrix failed gets one ``cka_mean`` row with ``status =
"failed"``; the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field

import simbench
from simbench.errors import ParamError


@dataclass(frozen=True)
class EarlyLayers(simbench.Benchmark):
    """Seed 003 §3.1: layer-wise CKA between generalising, memorising and random networks vs their function.

    ``factor`` (default ``condition``) names each model's condition;
    ``conditions`` the three values in the seed's order (generalising,
    memorising, random).  ``layers`` (default: every readable layer of the
    first model) and ``probe_set`` (default ``clean``) choose what is
    compared.  Thresholds: ``high``, ``max_agreement``, ``min_gap``,
    ``memorised``, ``alpha`` (see the module docstring for the rule and the
    records).
    """

    name: ClassVar[str] = "early_layers"
    description: ClassVar[str] = "layer-wise CKA between generalising, memorising and random nets vs function (seed 003)"
    version: ClassVar[str] = "1"

    metric: str = "linear_cka"
    probe_set: str = "clean"
    layers: tuple[str, ...] = ()
    factor: str = "condition"
    conditions: tuple[str, str, str] = ("generalising", "memorising", "random")
    high: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    max_agreement: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    min_gap: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    memorised: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    permutations: Annotated[int, Field(ge=99, le=1_000_000)] = 9999
    seed: int = 0

    #: the conformance kit's example (simbench.testing.check_benchmark): two seeds per condition of a tiny
    #: memorisation zoo on a slice of the bundled digits, trained for two epochs (conformance, not the claim)
    check_example: ClassVar[dict[str, Any]] = {
        "params": {"permutations": 99},
        "store": {"dataset": ("digits28", {}), "probes": 60,
                  "zoo": ("memorisation", {"seeds": (0, 1), "channels": (4, 4), "kernels": (5, 5), "epochs": 2,
                                           "batch_size": 64, "train_n": 128})},
    }

    def __post_init__(self) -> None:
        if len(set(self.conditions)) != 3:
            raise ParamError("conditions", f"expected three distinct condition names, got {list(self.conditions)}")
        if len(set(self.layers)) != len(self.layers):
            raise ParamError("layers", "must not repeat a layer")

    def requests(self, view: simbench.StoreView) -> list[simbench.MatrixRequest]:
        """One ``M x M`` matrix of ``metric`` over every model per layer."""
        from . import compute

        return compute.requests(self, view)

    def evaluate(self, view: simbench.StoreView) -> list[simbench.Record]:
        from . import compute

        return compute.evaluate(self, view)

    @classmethod
    def tables(cls, records: Any) -> list[Any]:
        """The verdict per pair of conditions, the layer-wise CKA (Fig. 1), the models' function."""
        from . import report

        return report.tables(records)

    @classmethod
    def plots(cls, records: Any, out_dir: Any, view: simbench.StoreView | None = None) -> list[Any]:
        """Layer-wise CKA between and within conditions (the seed's Fig. 1 with the within-condition spread)."""
        from . import report

        return report.plots(records, out_dir)
