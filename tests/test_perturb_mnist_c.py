"""MNIST-C corruptions: shape, range, determinism, batching, and exact checks where the corruption is exact."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import simbench
from simbench.params import configure
from simbench_plugins.perturbations import _mnist_c_impl as impl
from simbench_plugins.perturbations.mnist_c import CORRUPTIONS, MnistC

RANDOM = sorted(impl.RANDOM)


def digits28(n: int) -> torch.Tensor:
    """Real handwritten digits (sklearn), resized to 20x20 and centred in 28x28 like MNIST."""
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().images[:n], dtype=torch.float32) / 16.0
    x = F.interpolate(x.unsqueeze(1), size=(20, 20), mode="bilinear", align_corners=False).clamp(0, 1)
    return F.pad(x, (4, 4, 4, 4))


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return digits28(6)


@pytest.fixture(scope="module")
def corrupted(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {c: impl.corrupt(x, c, seed=0) for c in CORRUPTIONS}


# -- per corruption --------------------------------------------------------


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_changes_image_keeps_shape_and_range(name: str, x: torch.Tensor, corrupted: dict[str, torch.Tensor]) -> None:
    out = corrupted[name]
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    per_image_change = (out - x).abs().flatten(1).amax(1)
    assert (per_image_change > 0.05).all(), f"{name} left an image (almost) unchanged"


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_same_seed_same_output_and_batch_independent(
    name: str, x: torch.Tensor, corrupted: dict[str, torch.Tensor]
) -> None:
    again = impl.corrupt(x, name, seed=0)
    assert torch.equal(again, corrupted[name])
    # an image's corruption depends on its index, not on the rest of the batch
    part = impl.corrupt(x[2:5], name, seed=0, index=torch.arange(2, 5))
    torch.testing.assert_close(part, corrupted[name][2:5], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", RANDOM)
def test_different_seed_different_output(name: str, x: torch.Tensor, corrupted: dict[str, torch.Tensor]) -> None:
    other = impl.corrupt(x, name, seed=1)
    assert not torch.equal(other, corrupted[name])
    # ... and different images of one batch get different draws
    same = x[:1].expand(4, -1, -1, -1)
    out = impl.corrupt(same, name, seed=0)
    assert any(not torch.equal(out[0], out[i]) for i in range(1, 4))


@pytest.mark.parametrize("name", sorted(set(CORRUPTIONS) - impl.RANDOM))
def test_deterministic_corruptions_ignore_seed(name: str, x: torch.Tensor, corrupted: dict[str, torch.Tensor]) -> None:
    assert torch.equal(impl.corrupt(x, name, seed=123), corrupted[name])


def test_flat_inputs_keep_their_shape(x: torch.Tensor, corrupted: dict[str, torch.Tensor]) -> None:
    flat = x.reshape(x.shape[0], -1)
    out = impl.corrupt(flat, "zigzag", seed=0)
    assert out.shape == flat.shape
    assert torch.equal(out.reshape(x.shape), corrupted["zigzag"])


# -- exact and statistical checks ------------------------------------------


def test_stripe_is_exact(x: torch.Tensor, corrupted: dict[str, torch.Tensor]) -> None:
    out = corrupted["stripe"]
    assert torch.equal(out[..., :7], 1.0 - x[..., :7])
    assert torch.equal(out[..., 7:21], x[..., 7:21])
    assert torch.equal(out[..., 21:], 1.0 - x[..., 21:])


def test_translate_is_an_exact_three_pixel_shift(x: torch.Tensor, corrupted: dict[str, torch.Tensor]) -> None:
    out = corrupted["translate"]
    padded = F.pad(x, (3, 3, 3, 3))
    seen = set()
    for i in range(x.shape[0]):
        matches = [
            (dy, dx)
            for dy in (-3, 3)
            for dx in (-3, 3)
            if torch.equal(out[i, :, :, :], padded[i, :, 3 + dy : 31 + dy, 3 + dx : 31 + dx])
        ]
        assert len(matches) == 1, f"image {i} is not a +-3 px shift of the input"
        seen.add(matches[0])
    assert len(seen) > 1  # the direction is random


def test_brightness_adds_half_to_value(x: torch.Tensor, corrupted: dict[str, torch.Tensor]) -> None:
    torch.testing.assert_close(corrupted["brightness"], (x + 0.5).clamp(0, 1))
    # colour: HSV value rises by 0.5 with hue and saturation unchanged
    rgb = torch.tensor([0.2, 0.1, 0.0]).view(1, 3, 1, 1)
    out = impl.corrupt(rgb.expand(1, 3, 4, 4), "brightness")
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.7, 0.35, 0.0]))


def test_rotate_by_quarter_turn_matches_rot90(x: torch.Tensor) -> None:
    # severity chosen so that 0.4 rad * s = pi / 2: pixel grid maps onto itself
    out = impl.corrupt(x, "rotate", seed=0, severity=(math.pi / 2) / 0.4)
    for i in range(x.shape[0]):
        candidates = [torch.rot90(x[i], k, dims=(1, 2)) for k in (1, 3)]
        errors = [float((out[i] - c).abs().max()) for c in candidates]
        assert min(errors) < 1e-4


def test_scale_shrinks_digit_about_the_centre(x: torch.Tensor, corrupted: dict[str, torch.Tensor]) -> None:
    out = corrupted["scale"]
    # zooming out by 1/0.7 keeps 0.7**2 = 0.49 of the ink (area), centred on (13.5, 13.5)
    ratio = out.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert torch.allclose(ratio, torch.full_like(ratio, 0.49), atol=0.04)
    coords = torch.arange(28, dtype=torch.float32)

    def centroid(img: torch.Tensor) -> torch.Tensor:
        m = img.sum(dim=(1, 2, 3))
        return torch.stack([(img.sum(dim=(1, 2)) * coords).sum(-1) / m, (img.sum(dim=(1, 3)) * coords).sum(-1) / m], 1)

    # the new centroid is the old one pulled towards the centre by 0.7
    expected = 13.5 + 0.7 * (centroid(x) - 13.5)
    torch.testing.assert_close(centroid(out), expected, atol=0.15, rtol=0)


def test_shot_noise_is_poisson() -> None:
    # severity 0.1 -> c = 30 photons per unit; grey 0.3 -> Poisson(9) / 30
    grey = torch.full((16, 1, 28, 28), 0.3)
    out = impl.corrupt(grey, "shot_noise", seed=3, severity=0.1)
    assert abs(float(out.mean()) - 0.3) < 0.005
    assert abs(float(out.std()) - 0.1) < 0.005
    counts = out * 30
    assert torch.allclose(counts, counts.round(), atol=1e-4)  # integer photon counts


def test_impulse_noise_flips_requested_fraction() -> None:
    grey = torch.full((16, 1, 28, 28), 0.5)
    out = impl.corrupt(grey, "impulse_noise", seed=0)
    flipped = out != 0.5
    assert abs(float(flipped.float().mean()) - 0.17) < 0.01
    assert abs(float((out[flipped] == 1).float().mean()) - 0.5) < 0.04
    assert set(out[flipped].unique().tolist()) <= {0.0, 1.0}


def test_canny_marks_the_border_of_a_square() -> None:
    img = torch.zeros(1, 1, 28, 28)
    img[..., 8:20, 8:20] = 1.0
    out = impl.corrupt(img, "canny_edges")
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    inside, outside = out[..., 11:17, 11:17], out[..., :4, :]
    assert inside.sum() == 0 and outside.sum() == 0
    assert out[0, 0, 7:21, 13].sum() == 2  # one edge pixel per side on a vertical line through the square
    assert out[0, 0, 13, 7:21].sum() == 2


def test_fog_and_spatter_change_the_background() -> None:
    black = torch.zeros(4, 1, 28, 28)
    black[..., 10:18, 12:16] = 1.0
    fog = impl.corrupt(black, "fog", seed=0)
    assert fog[..., :5, :].mean() > 0.1  # fog covers the empty corner
    spatter = impl.corrupt(black, "spatter", seed=0)
    # mud blends towards grey 63/255 with opacity in [0.8, 1]
    mud = (spatter != black) & (black == 0)
    assert 0.01 < float(mud.float().mean()) < 0.6
    assert spatter[mud].min() >= 0.8 * 63 / 255 - 1e-6 and spatter[mud].max() <= 63 / 255 + 1e-6


def test_severity_scales_strength(x: torch.Tensor) -> None:
    weak = impl.corrupt(x, "impulse_noise", seed=0, severity=0.5)
    strong = impl.corrupt(x, "impulse_noise", seed=0, severity=2.0)
    assert (weak != x).float().mean() < (strong != x).float().mean()


# -- the plugin object -------------------------------------------------------


def test_params_are_validated() -> None:
    obj, key, msg = configure(MnistC, {"corruptions": ["fog", "blizzard"]})
    assert obj is None and key == "corruptions" and "unknown corruption 'blizzard'" in msg and "shot_noise" in msg
    obj, key, msg = configure(MnistC, {"severity": 0})
    assert obj is None and key == "severity"
    obj, _, _ = configure(MnistC, {"corruptions": ["fog", "stripe"], "severity": 2})
    assert obj == MnistC(corruptions=("fog", "stripe"), severity=2.0)
    assert len(MnistC().variants()) == 15


def test_probe_sets_one_per_corruption(x: torch.Tensor) -> None:
    y = torch.arange(x.shape[0])
    clean = simbench.ProbeSet(name="clean", x=x, y=y)
    pert = MnistC(corruptions=("shot_noise", "stripe"))
    sets = pert.probe_sets(clean, simbench.PerturbContext(seed=5))
    assert [p.name for p in sets] == pert.variants() == ["mnist_c/shot_noise", "mnist_c/stripe"]
    assert all(p.y is y and p.x.shape == x.shape for p in sets)
    assert torch.equal(sets[0].x, impl.corrupt(x, "shot_noise", seed=5))
    assert sets[1].meta["corruption"] == "stripe"


def test_gallery_writes_png(tmp_path, x: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from simbench_plugins.perturbations.gallery import render_gallery

    path = render_gallery(MnistC(corruptions=("stripe", "fog")), x[:3], tmp_path / "g.png")
    with Image.open(path) as img:
        w, h = img.size
    assert (w, h) == (460, 300)  # 3 columns (+ label margin) x 3 rows: clean, stripe, fog at 100 dpi
    assert path.stat().st_size > 1000


@pytest.mark.gpu
def test_cuda_matches_cpu(x: torch.Tensor, corrupted: dict[str, torch.Tensor]) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    for name in CORRUPTIONS:
        out = impl.corrupt(x.cuda(), name, seed=0)
        assert out.device.type == "cuda"
        # same random draws on both devices; only float rounding may differ
        assert (out.cpu() - corrupted[name]).abs().gt(1e-3).float().mean() < 0.01, name
