"""A minimal ReadableModel shared by the perturbation tests (import as ``from tiny_mlp import TinyMLP``)."""

from __future__ import annotations

import itertools

import torch
from torch import nn


class TinyMLP(nn.Module):
    """ReLU MLP; every linear layer's output (logits last) can be read, the last hidden one by default."""

    def __init__(self, sizes: tuple[int, ...] = (64, 32, 32, 10)) -> None:
        super().__init__()
        self.sizes = sizes
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.readable_layers = tuple(f"fc{i}" for i in range(1, len(self.layers) + 1))
        self.default_layer = self.readable_layers[-2]

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h, acts = x.flatten(1), {}
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
            acts[self.readable_layers[i]] = h
        return h, acts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def read(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
        acts = self._run(x)[1]
        return {name: acts[name].flatten(1) for name in layers}

    def dense_weights(self) -> list[torch.Tensor]:
        return [layer.weight.detach().T for layer in self.layers]
