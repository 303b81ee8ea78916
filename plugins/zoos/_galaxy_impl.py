"""The ``galaxy_cnn`` networks, the survey transform of their training data, and training (torch)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

import simbench
from simbench.seeding import derive_seed

from ._supervised import train_best_epoch
from ._galaxy_names import CLEAN, OVERLAP, mix_label


def question_groups(data: simbench.DataSplits) -> list[list[int]] | None:
    """Target columns per question (softmax groups), or None when the data names no questions."""
    meta = data.meta or {}
    questions = meta.get("questions")
    targets = list(meta.get("targets") or [])
    n_out = int(data.train.y.shape[1]) if data.train.y.ndim == 2 else 1
    if not questions:
        return None
    groups, start = [], 0
    for answers in questions.values():
        groups.append(list(range(start, start + len(answers))))
        start += len(answers)
    if start != n_out or (targets and len(targets) != n_out):
        raise ValueError(f"galaxy_cnn: the data's questions cover {start} columns but the targets have {n_out}")
    return groups


class GalaxyCNNModule(nn.Module):
    """Conv-BN-ReLU-maxpool blocks, global average pooling, a dense layer and a per-question softmax head.

    ``forward`` returns vote fractions (softmax per question, or sigmoids
    when the data has no questions); ``logits`` the head's raw output.
    Implements :class:`simbench.types.ReadableModel`.
    """

    default_layer = "fc1"

    def __init__(self, in_channels: int, n_out: int, groups: Sequence[Sequence[int]] | None, width: int = 8,
                 dense: int = 64) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 4 * width]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            for i in range(4)
        )
        self.fc1 = nn.Linear(chans[-1], dense)
        self.act = nn.ReLU()
        self.head = nn.Linear(dense, n_out)
        self.groups = [list(g) for g in groups] if groups is not None else None
        if self.groups is not None:
            # one index per column giving its question, so a softmax per question is one scatter
            owner = torch.empty(n_out, dtype=torch.long)
            for q, cols in enumerate(self.groups):
                owner[cols] = q
            self.register_buffer("owner", owner, persistent=False)
        self.readable_layers: tuple[str, ...] = ("block1", "block2", "block3", "block4", "pool", "fc1", "output")

    def _run(self, x: torch.Tensor, want: set[str] | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        acts: dict[str, torch.Tensor] = {}
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if want is not None and f"block{i + 1}" in want:
                acts[f"block{i + 1}"] = h.flatten(1)
        h = h.mean((-2, -1))
        if want is not None and "pool" in want:
            acts["pool"] = h
        h = self.act(self.fc1(h))
        if want is not None and "fc1" in want:
            acts["fc1"] = h
        logits = self.head(h)
        out = self.fractions(logits)
        if want is not None and "output" in want:
            acts["output"] = out
        return logits, acts

    def fractions(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax within each question (sigmoid per column without questions)."""
        if self.groups is None:
            return torch.sigmoid(logits)
        return torch.exp(self.log_fractions(logits))

    def log_fractions(self, logits: torch.Tensor) -> torch.Tensor:
        """log-softmax within each question, for all questions at once."""
        assert self.groups is not None
        owner = self.owner.to(logits.device)
        n_q = len(self.groups)
        idx = owner.expand_as(logits)
        top = torch.full((logits.shape[0], n_q), -math.inf, dtype=logits.dtype, device=logits.device)
        top = top.scatter_reduce(1, idx, logits, reduce="amax", include_self=True).detach()
        shifted = logits - top.gather(1, idx)
        norm = torch.zeros_like(top).scatter_add(1, idx, torch.exp(shifted))
        return shifted - torch.log(norm).gather(1, idx)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fractions(self.logits(x))

    def read(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        unknown = [name for name in layers if name not in self.readable_layers]
        if unknown:
            raise KeyError(f"galaxy_cnn has no layer(s) {unknown}; readable: {list(self.readable_layers)}")
        _, acts = self._run(x, set(layers))
        return {name: acts[name] for name in layers}

    def dense_weights(self) -> list[torch.Tensor]:
        return [self.fc1.weight.detach().t(), self.head.weight.detach().t()]

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Soft cross-entropy of the vote fractions per question, summed over questions (BCE without questions)."""
        if self.groups is None:
            return nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(1).mean()
        return -(y * self.log_fractions(logits)).sum(1).mean()


def instantiate(zoo: Any, spec: simbench.ModelSpec, data: simbench.DataSplits) -> GalaxyCNNModule:
    if data.task != "regression" or len(data.input_shape) != 3:
        raise ValueError("galaxy_cnn needs regression data with [C, H, W] images")
    n_out = int(data.train.y.shape[1]) if data.train.y.ndim == 2 else 1
    return GalaxyCNNModule(int(data.input_shape[0]), n_out, question_groups(data), width=zoo.width, dense=zoo.dense)


def survey_mix(x: torch.Tensor, surveys: Sequence[str], seed: int, stream: str,
               steps: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Every ``k``-th image through each of the ``k`` surveys (noise seeded per image, independent of batching).

    ``steps`` maps a survey name to its step list (the zoo's ``extra_surveys``); other names are presets."""
    from simbench_plugins.perturbations.survey import apply_survey

    out = x.clone()
    k = len(surveys)
    for j, survey in enumerate(surveys):
        idx = torch.arange(j, x.shape[0], k)
        if survey == CLEAN or len(idx) == 0:
            continue
        spec = (steps or {}).get(survey, survey)
        out[idx] = apply_survey(x[idx], spec, seed=seed, index=idx, stream=f"{stream}/{survey}").to(x.dtype)
    return out


def overlap_mix(x: torch.Tensor, y: torch.Tensor, surveys: Sequence[str], seed: int, stream: str,
                steps: Mapping[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A maximum-overlap mix of the same size: image ``i`` is galaxy ``i // k`` through survey ``i % k``, so the
    first ``ceil(N / k)`` galaxies are each seen through all ``k`` surveys (labels follow the galaxies)."""
    k = len(surveys)
    galaxy = torch.arange(x.shape[0]) // k
    return survey_mix(x[galaxy], surveys, seed, stream, steps), y[galaxy]


@torch.no_grad()
def _val_loss(model: GalaxyCNNModule, x: torch.Tensor, y: torch.Tensor, device: Any, batch: int = 512) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch].to(device), y[i : i + batch].to(device)
        total += float(model.loss(model.logits(xb), yb)) * len(xb)
    return total / max(1, len(x))


def train_one(model: GalaxyCNNModule, zoo: Any, train: tuple[torch.Tensor, torch.Tensor],
              val: tuple[torch.Tensor, torch.Tensor], batch_seed: int, device: Any, advance: Any) -> GalaxyCNNModule:
    """The model's own loss on the vote fractions; the best validation epoch is kept."""
    x_train, y_train = train
    return train_best_epoch(
        model, zoo, x_train, y_train,
        loss=lambda m, xb, yb: m.loss(m.logits(xb), yb),
        val_loss=lambda m: _val_loss(m, val[0], val[1], device),
        seed=batch_seed, device=device, advance=advance, step_on_skipped_batch=True,
    )


def training_data(zoo: Any, data: simbench.DataSplits, surveys: Sequence[str], seed: int, pairing: str = "random"
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The (surveyed) training and validation splits one training mix sees (validation: always the random mix)."""
    steps = {name: zoo.survey_steps(name) for name in surveys if name in getattr(zoo, "extra_surveys", {})}
    x_train, y_train = data.train.x, data.train.y.reshape(len(data.train), -1)
    if zoo.max_train:
        x_train, y_train = x_train[: zoo.max_train], y_train[: zoo.max_train]
    x_val, y_val = data.val.x, data.val.y.reshape(len(data.val), -1)
    if pairing == OVERLAP:
        train = overlap_mix(x_train, y_train, surveys, seed, "train", steps)
    else:
        train = (survey_mix(x_train, surveys, seed, "train", steps), y_train)
    return train, (survey_mix(x_val, surveys, seed, "val", steps), y_val)


def build(zoo: Any, data: simbench.DataSplits, ctx: simbench.RunContext) -> dict[str, Any]:
    specs = zoo.specs()
    advance = ctx.progress(f"Training {zoo.name}", total=len(specs) * zoo.epochs)
    by_label: Mapping[str, tuple[tuple[str, ...], str]] = {
        mix_label(m, p): (tuple(m), p) for m, p in zip(zoo.train_surveys, zoo.pairings(), strict=True)
    }
    surveyed: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for spec in specs:
        label = str(spec.factors["train_surveys"])
        if label not in surveyed:
            # the survey realisation is the data set of a mix: the same for every seed of that mix
            noise_seed = derive_seed(ctx.seed, "galaxy", "survey-noise")
            surveys, pairing = by_label[label]
            surveyed = {label: training_data(zoo, data, surveys, noise_seed, pairing)}
        seed = int(spec.factors["seed"])
        torch.manual_seed(derive_seed(ctx.seed, "galaxy", "init", seed))  # initial weights
        model = instantiate(zoo, spec, data).to(ctx.device)
        train, val = surveyed[label]
        batch_seed = derive_seed(ctx.seed, "galaxy", "batches", seed)
        models[spec.id] = train_one(model, zoo, train, val, batch_seed, ctx.device, advance)
    return models
