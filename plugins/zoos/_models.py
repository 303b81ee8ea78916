"""The modules the zoos build.  Each implements :class:`simbench.types.ReadableModel`.

A module's ``state_dict`` determines it completely (weights plus a
``test_accuracy`` buffer), so the runner can cache it and reload it into
``zoo.instantiate(spec, data)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._train import Params


class ReadableMixin(nn.Module):
    """Shared by the zoos' modules: layer reading and the clean test accuracy buffer."""

    readable_layers: tuple[str, ...]
    default_layer: str

    def _init_readable(self) -> None:
        # NaN until the zoo measures it; part of the state_dict so cached models keep it.
        self.register_buffer("test_accuracy", torch.tensor(float("nan")))

    def _activations(self, x: torch.Tensor, wanted: set[str]) -> dict[str, torch.Tensor]:
        """The ``wanted`` readable layers' outputs for ``x``; every concrete zoo network defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define _activations")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._activations(x, {"logits"})["logits"]

    def read(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations of ``layers`` (post-ReLU for hidden layers), each flattened to ``[n, d]``."""
        unknown = [name for name in layers if name not in self.readable_layers]
        if unknown:
            raise KeyError(f"unknown layer(s) {unknown}; readable layers: {list(self.readable_layers)}")
        acts = self._activations(x, set(layers))
        return {name: acts[name].reshape(acts[name].shape[0], -1) for name in layers}


class MLP(ReadableMixin):
    """A fully connected ReLU network with ``widths = (in, hidden..., out)``.

    Readable layers: ``hidden1`` ... ``hiddenK`` (post-ReLU) and ``logits``;
    the default is the last hidden (penultimate) layer.  Inputs of any shape
    are flattened.
    """

    def __init__(self, widths: Sequence[int], accuracy_buffer: bool = True) -> None:
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(self.widths[:-1], self.widths[1:]))
        n_hidden = len(self.widths) - 2
        self.readable_layers = (*(f"hidden{k}" for k in range(1, n_hidden + 1)), "logits")
        self.default_layer = f"hidden{n_hidden}" if n_hidden else "logits"
        if accuracy_buffer:
            self._init_readable()

    def _activations(self, x: torch.Tensor, wanted: set[str]) -> dict[str, torch.Tensor]:
        h = x.reshape(x.shape[0], -1)
        out: dict[str, torch.Tensor] = {}
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < last:
                h = torch.relu(h)
                if f"hidden{k + 1}" in wanted:
                    out[f"hidden{k + 1}"] = h
        out["logits"] = h
        return out

    def dense_weights(self) -> list[torch.Tensor]:
        """Weight matrices ``[in, out]``, input layer first."""
        return [layer.weight.detach().T for layer in self.layers]

    def load_params(self, params: Params) -> MLP:
        """Copy ``[(W [in, out], b [out]), ...]`` into the layers."""
        with torch.no_grad():
            for layer, (w, b) in zip(self.layers, params):
                layer.weight.copy_(w.T)
                layer.bias.copy_(b)
        return self


class ConvTrunk(nn.Module):
    """Seed 001 §3.3's convolutions: conv 64@5x5 -> ReLU -> max-pool 2 -> conv 32@5x5 -> ReLU -> max-pool 2.

    On 28x28 inputs the output has 32 x 4 x 4 = 512 features.
    """

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 5)
        self.conv2 = nn.Conv2d(64, 32, 5)

    def stages(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c1 = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        c2 = torch.max_pool2d(torch.relu(self.conv2(c1)), 2)
        return c1, c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)[1].flatten(1)

    @staticmethod
    def out_features(input_shape: Sequence[int]) -> int:
        _, h, w = input_shape
        h, w = (h - 4) // 2, (w - 4) // 2
        h, w = (h - 4) // 2, (w - 4) // 2
        return 32 * h * w


class BaseCNN(nn.Module):
    """The base network of seed 001 §3.3: :class:`ConvTrunk` -> dense 1 024 -> ReLU -> dense ``classes``."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: int = 1024) -> None:
        super().__init__()
        self.trunk = ConvTrunk(input_shape[0])
        self.fc = nn.Linear(ConvTrunk.out_features(input_shape), hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(self.trunk(x))))


class FinetunedCNN(ReadableMixin):
    """A frozen :class:`ConvTrunk` with a trainable dense ReLU head (seed 001 §3.3).

    Readable layers: ``conv1``, ``conv2`` (after pooling), the head's
    ``hidden1`` ... ``hiddenK`` and ``logits``; default: the last hidden
    layer.  :meth:`dense_weights` returns the head's matrices only, which is
    what weight metrics compare.
    """

    def __init__(self, input_shape: Sequence[int], head_widths: Sequence[int]) -> None:
        super().__init__()
        self.trunk = ConvTrunk(input_shape[0])
        self.trunk.requires_grad_(False)
        self.head = MLP(head_widths, accuracy_buffer=False)  # the accuracy buffer is the whole model's
        self.readable_layers = ("conv1", "conv2", *self.head.readable_layers)
        self.default_layer = self.head.default_layer
        self._init_readable()

    def _activations(self, x: torch.Tensor, wanted: set[str]) -> dict[str, torch.Tensor]:
        c1, c2 = self.trunk.stages(x)
        out = self.head._activations(c2.flatten(1), wanted)
        out["conv1"], out["conv2"] = c1, c2
        return out

    def dense_weights(self) -> list[torch.Tensor]:
        return self.head.dense_weights()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    if len(y) == 0:
        return float("nan")
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(y), batch_size):
        xb = x[start : start + batch_size].to(device)
        correct += int((model(xb).argmax(1).cpu() == y[start : start + batch_size]).sum())
    return correct / len(y)


def random_square_symmetry(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random symmetry of the square (rotation by k x 90 degrees, optional mirror) for a whole batch.

    Cheap augmentation for images without a preferred orientation (galaxies, cosmological
    fields); draws two numbers from ``gen``, so training stays reproducible per seed.
    """
    k = int(torch.randint(4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(-2, -1))
    if bool(torch.randint(2, (1,), generator=gen)):
        x = torch.flip(x, dims=(-1,))
    return x
