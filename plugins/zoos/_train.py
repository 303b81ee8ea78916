"""Training of MLP ensembles: vectorised (all seeds at once) and one model at a time.

Models of one architecture and strategy that differ only in their seed are
trained as *one* batched model: layer ``l`` of all ``M`` members is a weight
tensor ``[M, in, out]`` applied with ``baddbmm``, every member reads its own
mini-batch (its own data order) and draws its own attack noise.  The loss is
the sum of the members' mean losses, so each member's gradient is exactly the
gradient it would get alone, and since Adam / SGD update every element
independently, one optimiser over the stacked tensors is the same as ``M``
optimisers.  :func:`train_one` is the plain reference (``nn.Linear`` +
``torch.optim``, one model at a time) that the equivalence test and the
benchmark compare against.

Adversarial training (inputs in [0, 1]):

* ``fgsm`` -- Goodfellow, Shlens & Szegedy 2015 (the FGSM training seed 001
  cites): no random start, one signed-gradient step of size eps from the
  clean input, clipped to [0, 1]: ``x + eps * sign(grad_x loss(x))``.
* ``fgsm_rs`` -- Wong, Rice & Kolter 2020, "Fast is better than free" (FGSM
  with a random start): start from uniform noise in the eps-ball, one
  signed-gradient step of size ``fgsm_alpha`` (default 1.25 eps), project
  back to the eps-ball and [0, 1].
* ``pgd``  -- Madry et al. 2018: uniform random start, ``steps`` signed
  gradient steps of size ``alpha``, each projected to the eps-ball and [0, 1].
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

Params = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: W [in, out], b [out]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one ensemble's training run."""

    epochs: int
    checkpoints: tuple[int, ...]
    strategy: str = "standard"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    eps: float = 0.3
    alpha: float = 0.01
    steps: int = 40
    fgsm_alpha: float = 0.0  # step of fgsm_rs; 0 = 1.25 * eps (Wong et al.)
    warmup_epochs: int = 0

    @property
    def fgsm_step(self) -> float:
        return self.fgsm_alpha if self.fgsm_alpha > 0 else 1.25 * self.eps

    def at_epoch(self, epoch: int) -> TrainConfig:
        """The configuration in force during ``epoch`` (1-based): eps (and step sizes) ramp up linearly
        over the first ``warmup_epochs`` epochs, which keeps small networks from collapsing to a constant."""
        if self.warmup_epochs <= 0 or epoch > self.warmup_epochs:
            return self
        scale = epoch / (self.warmup_epochs + 1)
        return dataclasses.replace(
            self, eps=self.eps * scale, alpha=self.alpha * scale, fgsm_alpha=self.fgsm_step * scale, warmup_epochs=0
        )


@dataclass(frozen=True)
class Member:
    """One model of an ensemble: its initial weights and the seeds of its data order and attack noise."""

    init: Params
    data_seed: int
    attack_seed: int


@dataclass
class EnsembleResult:
    """``snapshots[epoch][member]`` = that member's parameters after ``epoch`` epochs (CPU)."""

    snapshots: dict[int, list[Params]] = field(default_factory=dict)


def init_mlp(widths: Sequence[int], generator: torch.Generator) -> Params:
    """PyTorch's default ``nn.Linear`` initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from ``generator``."""
    params: Params = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_in, fan_out, generator=generator) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=generator) * 2 - 1) * bound
        params.append((w, b))
    return params


# --------------------------------------------------------------------------
# Attacks used for adversarial training (work for one model or a batched ensemble)
# --------------------------------------------------------------------------

LossFn = Callable[[torch.Tensor], torch.Tensor]  # adversarial input -> scalar loss
GradFn = Callable[[torch.Tensor], torch.Tensor]  # adversarial input -> d loss / d input (any positive scale)


def _input_grad(loss_fn: LossFn, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)  # a view sharing x's storage: callers may update x in place afterwards
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_fn(x), x)
    return grad


def fgsm(loss_fn: LossFn, x: torch.Tensor, eps: float, grad_fn: GradFn | None = None) -> torch.Tensor:
    """Plain FGSM (Goodfellow et al. 2015): ``clip(x + eps * sign(grad_x loss(x)), 0, 1)``, no random start.

    ``grad_fn``, if given, replaces autograd on ``loss_fn`` for the input gradient.
    """
    grad = grad_fn(x) if grad_fn is not None else _input_grad(loss_fn, x)
    return (x + eps * grad.sign_()).clamp_(0, 1)


def fgsm_fast(
    loss_fn: LossFn, x: torch.Tensor, noise: torch.Tensor, eps: float, alpha: float, grad_fn: GradFn | None = None
) -> torch.Tensor:
    """Fast FGSM (Wong et al. 2020): random start ``noise`` in [-eps, eps], one step of ``alpha``.

    ``grad_fn``, if given, replaces autograd on ``loss_fn`` for the input gradient.
    """
    x_adv = (x + noise).clamp_(0, 1)  # start inside the eps-ball and the image range
    grad = grad_fn(x_adv) if grad_fn is not None else _input_grad(loss_fn, x_adv)
    x_adv.add_(grad.sign_(), alpha=alpha)
    return torch.clamp(x_adv, (x - eps).clamp_(min=0), (x + eps).clamp_(max=1))


def pgd(
    loss_fn: LossFn,
    x: torch.Tensor,
    noise: torch.Tensor | None,
    eps: float,
    alpha: float,
    steps: int,
    grad_fn: GradFn | None = None,
) -> torch.Tensor:
    """L-inf PGD (Madry et al. 2018) from ``x + noise`` (no random start if ``noise`` is None).

    ``grad_fn``, if given, replaces autograd on ``loss_fn`` for the input gradient.
    """
    lo, hi = (x - eps).clamp_(min=0), (x + eps).clamp_(max=1)
    x_adv = x.clone() if noise is None else (x + noise).clamp_(0, 1)
    for _ in range(steps):
        grad = grad_fn(x_adv) if grad_fn is not None else _input_grad(loss_fn, x_adv)
        # in place, few passes: the ensemble's tensors are large and these ops are memory-bound
        x_adv.add_(grad.sign_(), alpha=alpha).clamp_(lo, hi)
    return x_adv


def adversarial_inputs(
    loss_fn: LossFn,
    x: torch.Tensor,
    cfg: TrainConfig,
    noise: Callable[[], torch.Tensor],
    grad_fn: GradFn | None = None,
) -> torch.Tensor:
    """The training inputs of ``cfg.strategy`` for clean inputs ``x``."""
    if cfg.strategy == "standard":
        return x
    if cfg.strategy == "fgsm":
        return fgsm(loss_fn, x, cfg.eps, grad_fn=grad_fn)
    if cfg.strategy == "fgsm_rs":
        return fgsm_fast(loss_fn, x, noise(), cfg.eps, cfg.fgsm_step, grad_fn=grad_fn)
    if cfg.strategy == "pgd":
        return pgd(loss_fn, x, noise(), cfg.eps, cfg.alpha, cfg.steps, grad_fn=grad_fn)
    raise ValueError(f"unknown training strategy {cfg.strategy!r}")


@torch.no_grad()
def batched_mlp_input_grad(
    weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Gradient of the summed cross-entropy of ``M`` MLPs with respect to their inputs ``x`` ``[M, B, in]``.

    Written out by hand (forward with ReLU masks, ``softmax - onehot``, then
    back through the transposed weights): an attack step needs only this
    gradient, and skipping the autograd engine's per-node bookkeeping is a
    large part of the ensemble's speed-up on CPU.  Equals autograd's gradient
    of ``sum_i CE_i`` (tested).
    """
    hidden: list[torch.Tensor] = []  # post-ReLU activations: their zeros are the ReLU masks
    h = x
    last = len(weights) - 1
    for layer, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b.detach(), h, w.detach())
        if layer < last:
            h = torch.relu_(h)
            hidden.append(h)
    g = torch.softmax(h, dim=-1)
    g.scatter_add_(-1, y.unsqueeze(-1), torch.full(y.shape + (1,), -1.0, dtype=g.dtype, device=g.device))
    for layer in range(last, -1, -1):
        g = torch.bmm(g, weights[layer].detach().transpose(1, 2))
        if layer > 0:  # ReLU backward: one fused kernel, as autograd does
            g = torch.ops.aten.threshold_backward(g, hidden[layer - 1], 0.0)
    return g


def _uniform_noise(shape: Sequence[int], gen: torch.Generator, eps: float, like: torch.Tensor) -> torch.Tensor:
    return (torch.rand(tuple(shape), generator=gen, device=like.device, dtype=like.dtype) * 2 - 1) * eps


def _optimizer(params: list[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD; the fused kernels (one pass over each tensor) where this torch build has them.

    Both training paths use this, so the comparison between them is fair.
    """
    if cfg.optimizer == "adam":
        make = lambda **kw: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)  # noqa: E731
    elif cfg.optimizer == "sgd":
        make = lambda **kw: torch.optim.SGD(  # noqa: E731
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **kw
        )
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
    try:
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch or unsupported device/dtype
        return make()


@contextlib.contextmanager
def _flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero while training on CPU.

    Networks that adversarial training drives towards a constant output
    produce denormal gradients, which are ~100x slower on x86 CPUs.
    """
    changed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


def _attack_generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# --------------------------------------------------------------------------
# Vectorised ensemble training
# --------------------------------------------------------------------------


def batched_mlp_forward(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """``h`` ``[M, B, in]`` through ``M`` MLPs (``weights[l]`` ``[M, in, out]``, ``biases[l]`` ``[M, 1, out]``)."""
    last = len(weights) - 1
    for layer, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b, h, w)
        if layer < last:
            h = torch.relu(h)
    return h


@_flush_denormals()
def train_ensemble(
    widths: Sequence[int],
    members: Sequence[Member],
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    advance: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
    label: str = "",
) -> EnsembleResult:
    """Train all ``members`` (same ``widths``) at once; return their parameters at ``cfg.checkpoints``.

    ``x`` is ``[N, ...]``; ``encode`` maps a batch ``[K, ...]`` to features
    ``[K, widths[0]]`` (a frozen feature extractor; default: flatten).
    Attacks perturb ``x`` itself, through ``encode``.  ``log`` (verbose runs)
    receives one line per epoch: the members' mean training loss and accuracy
    on the (possibly adversarial) batches they trained on, prefixed by ``label``.
    """
    device = torch.device(device)
    m = len(members)
    weights = [
        torch.stack([mem.init[l][0] for mem in members]).to(device, dtype).requires_grad_(True)
        for l in range(len(widths) - 1)
    ]
    biases = [
        torch.stack([mem.init[l][1] for mem in members]).unsqueeze(1).to(device, dtype).requires_grad_(True)
        for l in range(len(widths) - 1)
    ]
    opt = _optimizer([p for pair in zip(weights, biases) for p in pair], cfg)
    x = x.to(device, dtype)
    y = y.to(device)
    n = x.shape[0]
    in_shape = tuple(x.shape[1:])
    data_gens = [torch.Generator().manual_seed(mem.data_seed) for mem in members]
    attack_gens = [_attack_generator(mem.attack_seed, device) for mem in members]

    def forward(xb: torch.Tensor) -> torch.Tensor:  # [M, B, *in] -> [M, B, C]
        bsz = xb.shape[1]
        h = encode(xb.reshape(m * bsz, *in_shape)) if encode is not None else xb
        return batched_mlp_forward(weights, biases, h.reshape(m, bsz, -1))

    def snapshot() -> list[Params]:
        return [
            [(w[i].detach().to("cpu", copy=True), b[i, 0].detach().to("cpu", copy=True)) for w, b in zip(weights, biases)]
            for i in range(m)
        ]

    result = EnsembleResult()
    if 0 in cfg.checkpoints:
        result.snapshots[0] = snapshot()
    seen, loss_sum, correct = 0, torch.zeros(m, device=device), torch.zeros(m, device=device)
    for epoch in range(1, cfg.epochs + 1):
        ecfg = cfg.at_epoch(epoch)
        perms = torch.stack([torch.randperm(n, generator=g) for g in data_gens]).to(device)
        for start in range(0, n, cfg.batch_size):
            idx = perms[:, start : start + cfg.batch_size]  # [M, B]: each member's own batch
            bsz = idx.shape[1]
            flat = idx.reshape(-1)
            # index_select on the flat index is several times faster than x[idx] on CPU
            xb = x.index_select(0, flat).view(m, bsz, *in_shape)
            yb = y.index_select(0, flat).view(m, bsz)

            def loss_fn(inputs: torch.Tensor, yb: torch.Tensor = yb, bsz: int = bsz) -> torch.Tensor:
                # sum over members of each member's mean loss: member gradients stay independent
                return F.cross_entropy(forward(inputs).reshape(m * bsz, -1), yb.reshape(-1), reduction="sum") / bsz

            def noise(xb: torch.Tensor = xb) -> torch.Tensor:
                return torch.stack([_uniform_noise(xb.shape[1:], g, ecfg.eps, xb) for g in attack_gens])

            def grad_fn(inputs: torch.Tensor, yb: torch.Tensor = yb, bsz: int = bsz) -> torch.Tensor:
                flat = inputs.reshape(m, bsz, -1)
                return batched_mlp_input_grad(weights, biases, flat, yb).reshape(inputs.shape)

            # the hand-written input gradient covers the plain MLP; through an encoder, autograd
            xb = adversarial_inputs(loss_fn, xb, ecfg, noise, grad_fn=grad_fn if encode is None else None)
            opt.zero_grad(set_to_none=True)
            if log is None:
                loss_fn(xb).backward()
            else:  # the same loss, read per member for the epoch line
                logits = forward(xb)
                per = F.cross_entropy(logits.reshape(m * bsz, -1), yb.reshape(-1), reduction="none").view(m, bsz)
                (per.sum() / bsz).backward()
                seen += bsz
                loss_sum += per.detach().sum(dim=1)
                correct += (logits.detach().argmax(-1) == yb).sum(dim=1)
            opt.step()
        if log is not None:
            losses, accs = (loss_sum / max(seen, 1)).tolist(), (correct / max(seen, 1)).tolist()
            log(f"{label}epoch {epoch}/{cfg.epochs}: train loss {sum(losses) / m:.4f} "
                f"(members {min(losses):.3f}-{max(losses):.3f}), accuracy {sum(accs) / m:.3f} "
                f"({min(accs):.3f}-{max(accs):.3f})")
            seen, loss_sum, correct = 0, torch.zeros(m, device=device), torch.zeros(m, device=device)
        if epoch in cfg.checkpoints:
            result.snapshots[epoch] = snapshot()
        if advance is not None:
            advance(1)
    return result


# --------------------------------------------------------------------------
# One model at a time (reference and baseline)
# --------------------------------------------------------------------------


def plain_mlp(widths: Sequence[int]) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if k < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


@_flush_denormals()
def train_one(
    widths: Sequence[int],
    member: Member,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> dict[int, Params]:
    """Train one plain ``nn.Sequential`` MLP with ``torch.optim``, exactly as the ensemble trains its members."""
    device = torch.device(device)
    model = plain_mlp(widths).to(device, dtype)
    linears = [mod for mod in model if isinstance(mod, torch.nn.Linear)]
    with torch.no_grad():
        for lin, (w, b) in zip(linears, member.init):
            lin.weight.copy_(w.T)
            lin.bias.copy_(b)
    opt = _optimizer(list(model.parameters()), cfg)
    x = x.to(device, dtype).reshape(x.shape[0], -1)
    y = y.to(device)
    n = x.shape[0]
    data_gen = torch.Generator().manual_seed(member.data_seed)
    attack_gen = _attack_generator(member.attack_seed, device)

    def snapshot() -> Params:
        return [(lin.weight.detach().T.to("cpu", copy=True), lin.bias.detach().to("cpu", copy=True)) for lin in linears]

    out: dict[int, Params] = {}
    if 0 in cfg.checkpoints:
        out[0] = snapshot()
    for epoch in range(1, cfg.epochs + 1):
        ecfg = cfg.at_epoch(epoch)
        perm = torch.randperm(n, generator=data_gen).to(device)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            xb, yb = x[idx], y[idx]

            def loss_fn(inputs: torch.Tensor, yb: torch.Tensor = yb) -> torch.Tensor:
                return F.cross_entropy(model(inputs), yb)

            def noise(xb: torch.Tensor = xb) -> torch.Tensor:
                return _uniform_noise(xb.shape, attack_gen, ecfg.eps, xb)

            xb = adversarial_inputs(loss_fn, xb, ecfg, noise)
            opt.zero_grad(set_to_none=True)
            loss_fn(xb).backward()
            opt.step()
        if epoch in cfg.checkpoints:
            out[epoch] = snapshot()
    return out
