"""Galaxy morphology under survey shift (seed 002): generator, Galaxy Zoo loader, CNN zoo, survey_transfer."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

import simbench
from simbench.errors import UserError
from simbench.params import configure
from simbench.testing import FakeStore, run_benchmark
from simbench_plugins.benchmarks.survey_transfer import compute as sti
from simbench_plugins.benchmarks.survey_transfer import report as str_report
from simbench_plugins.benchmarks.survey_transfer import SurveyTransfer
from simbench_plugins.data import _galaxy_impl as G
from simbench_plugins.data.galaxy import GalaxySynth, GalaxyZoo
from simbench_plugins.perturbations.survey import apply_survey
from simbench_plugins.zoos import _galaxy_impl as Z
from simbench_plugins.zoos.galaxy import GalaxyCNN


def _ctx(seed: int = 0) -> simbench.RunContext:
    return simbench.RunContext(seed=seed)


# --------------------------------------------------------------------------
# Generator: labels match the rendered features
# --------------------------------------------------------------------------


def _disks(n: int = 12, seed: int = 0, **overrides: float) -> dict[str, torch.Tensor]:
    """Face-on, centred, plain disk galaxies with bulges (no bar, arms, odd feature, artefact), then overrides."""
    lat = G.sample_latents(n, torch.Generator().manual_seed(seed), artefact_rate=0.0, odd_rate=0.0)
    plain = {"artefact": 0.0, "elliptical": 0.0, "cos_i": 1.0, "bar": 0.0, "spiral": 0.0, "odd": 0.0,
             "cx": 0.0, "cy": 0.0, "brightness": 0.6, "q_b": 1.0}
    for k, v in {**plain, **overrides}.items():
        lat[k] = torch.full((n,), float(v), dtype=torch.float64)
    lat["bt"] = 0.1 + 0.2 * torch.rand(n, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    lat["n_sersic"] = torch.full((n,), 2.0, dtype=torch.float64)
    return lat


def test_bar_raises_the_central_m2_fourier_amplitude() -> None:
    plain, barred = G.render(_disks()), G.render(_disks(bar=0.8))
    a0 = G.fourier_amplitude(plain, 2, 2.0, 9.0)
    a1 = G.fourier_amplitude(barred, 2, 2.0, 9.0)
    assert float(a0.max()) < 0.02  # a face-on disk with a round-ish bulge is nearly axisymmetric
    assert bool((a1 > a0 + 0.05).all()), (a0, a1)


def test_spiral_arms_raise_outer_asymmetry_and_make_the_galaxy_bluer() -> None:
    plain, spiral = G.render(_disks()), G.render(_disks(spiral=0.9))
    amp = lambda x: sum(G.fourier_amplitude(x, m, 5.0, 18.0) for m in (2, 3, 4))  # noqa: E731
    assert bool((amp(spiral) > 5 * amp(plain)).all()) and float(amp(spiral).mean()) > 0.03
    assert bool((G.colour_index(spiral) > G.colour_index(plain)).all())  # arms are young, blue stars


def test_edge_on_disks_are_thin() -> None:
    q_face = G.axis_ratio(G.render(_disks(cos_i=1.0)))
    q_edge = G.axis_ratio(G.render(_disks(cos_i=0.03, bt=0.1)))
    assert float(q_face.min()) > 0.8 and float(q_edge.max()) < 0.45


def test_rings_add_light_outside_the_disk_and_mergers_break_the_symmetry() -> None:
    lat = _disks()
    plain, ring = G.render(lat), G.render(_disks(odd=0.9, odd_kind=0.0))
    merger = G.render(_disks(odd=0.9, odd_kind=1.0))
    r, _ = G.polar(plain.shape[-1])

    def beyond(x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:  # light fraction beyond 2.2 scale lengths
        lum = x.double().mean(1)
        return (lum * (r[None] > radius[:, None, None])).sum((-2, -1)) / lum.sum((-2, -1))

    def asymmetry(x: torch.Tensor) -> torch.Tensor:  # 180-degree rotational asymmetry about the centre
        lum = x.double().mean(1)
        return (lum - torch.rot90(lum, 2, dims=(-2, -1))).abs().sum((-2, -1)) / lum.sum((-2, -1))

    assert bool((beyond(ring, 2.2 * lat["h"]) > beyond(plain, 2.2 * lat["h"]) + 0.02).all())
    assert float(asymmetry(plain).max()) < 0.05  # centred, face-on: symmetric up to pixel rounding
    assert bool((asymmetry(merger) > asymmetry(plain) + 0.1).all())
    assert float(asymmetry(ring).max()) < 0.05  # a ring is an odd feature that keeps the symmetry


def test_artefacts_concentrate_light_in_a_line_or_point() -> None:
    def line_fraction(x: torch.Tensor) -> torch.Tensor:  # largest share of the light in one row or column
        lum = x.double().mean(1)
        tot = lum.sum((-2, -1))
        return torch.maximum(lum.sum(-1).amax(-1), lum.sum(-2).amax(-1)) / tot

    star = G.render(_disks(artefact=1.0, artefact_kind=0.0))
    trail = G.render(_disks(artefact=1.0, artefact_kind=1.0, artefact_angle=0.0))
    plain = G.render(_disks())
    assert bool((line_fraction(star) > line_fraction(plain) + 0.05).all())
    assert bool((line_fraction(trail) > line_fraction(plain) + 0.1).all())


def test_vote_fractions_sum_to_one_and_follow_the_probabilities() -> None:
    lat = G.sample_latents(2000, torch.Generator().manual_seed(3))
    y = G.simulate_votes(lat, torch.Generator().manual_seed(4), n_volunteers=40)
    assert y.shape == (2000, len(G.target_names())) and float(y.min()) >= 0 and float(y.max()) <= 1
    for cols in G.question_slices().values():
        assert torch.allclose(y[:, cols].sum(1), torch.ones(2000), atol=1e-5)
    # the first question is asked of all 40 volunteers: binomial scatter around the answer probabilities
    p = G.answer_probabilities(lat)["smooth_or_featured"][:, 1]
    resid = (y[:, 1].double() - p) / torch.sqrt(p * (1 - p) / 40).clamp_min(1e-3)
    assert abs(float(resid.mean())) < 0.1 and 0.85 < float(resid[(p > 0.1) & (p < 0.9)].std()) < 1.15
    # more volunteers, less label noise
    y400 = G.simulate_votes(lat, torch.Generator().manual_seed(4), n_volunteers=400)
    assert float((y400[:, 1] - p).abs().mean()) < 0.5 * float((y[:, 1] - p).abs().mean())


def test_population_labels_track_image_statistics() -> None:
    meta = {"sizes": {"train": 400, "val": 8, "test": 8}, "seed": 5, "artefact_rate": 0.0, "odd_rate": 0.15,
            "n_volunteers": 40, "size": 64}
    x, y, lat = G.make_split(meta, "train")
    names = G.target_names()
    edge = y[:, names.index("edge_on_yes")].numpy()
    featured = y[:, names.index("smooth_or_featured_featured")].numpy()
    disk = featured > 0.6
    flat = 1 - G.axis_ratio(x).numpy()
    assert np.corrcoef(edge[disk], flat[disk])[0, 1] > 0.6
    assert np.corrcoef(featured, G.colour_index(x).numpy())[0, 1] > 0.3  # featured = disky = bluer


def test_galaxy_synth_is_deterministic_with_the_right_shapes() -> None:
    ds = GalaxySynth(n_train=24, n_val=8, n_test=8, size=32)
    d = ds.load(_ctx(1))
    assert d.task == "regression" and d.input_shape == (3, 32, 32)
    assert d.train.y.shape == (24, 14) and d.meta["targets"] == G.target_names()
    assert set(d.meta["tasks"].values()) <= set(d.meta["targets"])
    for split in (d.train, d.val, d.test):
        assert split.x.dtype == torch.float32 and float(split.x.min()) >= 0 and float(split.x.max()) <= 1
    again = ds.load(_ctx(1))
    assert torch.equal(d.train.x, again.train.x) and torch.equal(d.test.y, again.test.y)
    other = ds.load(_ctx(2))
    assert not torch.equal(d.train.x, other.train.x)
    assert not torch.equal(d.train.x[:8], d.val.x)  # splits are independent draws


# --------------------------------------------------------------------------
# galaxy_zoo: local parquet offline, errors
# --------------------------------------------------------------------------

QUESTIONS = {"smooth-or-featured": ("smooth", "featured-or-disk", "artifact"), "bar": ("yes", "no")}


def _write_gz_parquet(path: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Galaxy Zoo's hub schema: image struct<bytes, path>, id_str, counts, fractions, total votes per question."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    blobs = []
    for c in colours:
        buf = io.BytesIO()
        Image.fromarray(np.broadcast_to(c, (24, 24, 3)).copy(), mode="RGB").save(buf, format="PNG")
        blobs.append({"bytes": buf.getvalue(), "path": None})
    cols: dict[str, object] = {"image": blobs, "id_str": [f"g{seed}-{i}" for i in range(n)]}
    fracs = []
    for q, answers in QUESTIONS.items():
        counts = rng.integers(0, 20, size=(n, len(answers)))
        counts[0] = 0  # nobody answered: fractions become uniform
        total = counts.sum(1)
        for j, a in enumerate(answers):
            cols[f"{q}-gz2_{a}"] = counts[:, j].astype(np.int32)
            with np.errstate(invalid="ignore", divide="ignore"):
                cols[f"{q}-gz2_{a}_fraction"] = (counts[:, j] / total).astype(np.float32)  # NaN where total = 0
        cols[f"{q}-gz2_total-votes"] = total.astype(np.int32)
        fracs.append(np.where(total[:, None] > 0, counts / np.maximum(total, 1)[:, None], 1 / len(answers)))
    pq.write_table(pa.table(cols), path)
    return colours, np.concatenate(fracs, 1)


def test_galaxy_zoo_loads_local_parquet_offline(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tr_col, tr_y = _write_gz_parquet(str(tmp_path / "train-0.parquet"), 30, 0)
    te_col, te_y = _write_gz_parquet(str(tmp_path / "test.parquet"), 10, 1)
    ds, key, msg = configure(GalaxyZoo, {
        "questions": ["smooth-or-featured", "bar"], "size": 16, "val_fraction": 0.2,
        "data_files": {"train": str(tmp_path / "train-*.parquet"), "test": str(tmp_path / "test.parquet")},
    })
    assert ds is not None, (key, msg)
    d = ds.load(_ctx())
    assert d.task == "regression" and d.input_shape == (3, 16, 16)
    assert len(d.train) == 24 and len(d.val) == 6 and len(d.test) == 10
    assert d.meta["targets"] == ["smooth-or-featured_smooth", "smooth-or-featured_featured-or-disk",
                                 "smooth-or-featured_artifact", "bar_yes", "bar_no"]
    # test rows: the same set of (colour, fractions) as written, uniform fractions where nobody voted
    want = {tuple(int(v) for v in c): f for c, f in zip(te_col, te_y)}
    assert len(want) == 10
    for i in range(len(d.test)):
        colour = tuple(int(v) for v in np.round(d.test.x[i, :, 8, 8].numpy() * 255))
        assert np.allclose(d.test.y[i].numpy(), want.pop(colour), atol=1e-6)
    assert not want
    for split in (d.train, d.val, d.test):
        assert torch.allclose(split.y[:, :3].sum(1), torch.ones(len(split))) and torch.allclose(
            split.y[:, 3:].sum(1), torch.ones(len(split)))
    assert torch.equal(ds.load(_ctx()).train.x, d.train.x)  # deterministic
    capped = GalaxyZoo(questions=("bar",), data_files=ds.data_files, size=8, max_train=10, max_test=4).load(_ctx())
    assert len(capped.train) == 10 and len(capped.test) == 4 and capped.train.y.shape[1] == 2


def test_galaxy_zoo_unknown_question_and_missing_file_are_user_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _write_gz_parquet(str(tmp_path / "a.parquet"), 6, 0)
    files = {"train": str(tmp_path / "a.parquet"), "test": str(tmp_path / "a.parquet")}
    with pytest.raises(UserError, match="no '<has-spiral-arms>-<campaign>_<answer>_fraction' columns"):
        GalaxyZoo(questions=("has-spiral-arms",), data_files=files, val_fraction=0.2).load(_ctx())
    with pytest.raises(UserError, match="data_files.train: no such file"):
        GalaxyZoo(data_files={"train": str(tmp_path / "nope.parquet"), "test": files["test"]}).load(_ctx())
    _, key, _ = configure(GalaxyZoo, {"data_files": {"train": "x"}})
    assert key == "data_files"


def test_galaxy_zoo_offline_without_files_says_how_to_get_them(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(UserError) as info:
        GalaxyZoo(cache_dir=str(tmp_path / "empty-cache")).load(_ctx())
    message = str(info.value)
    assert "\n" not in message
    assert "offline" in message and "data_files" in message and "load_dataset('mwalmsley/gz2')" in message


# --------------------------------------------------------------------------
# galaxy_cnn
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data() -> simbench.DataSplits:
    return GalaxySynth(n_train=256, n_val=64, n_test=64, size=32).load(_ctx(0))


def test_zoo_specs_factors_and_validation() -> None:
    zoo = GalaxyCNN(seeds=(0, 1))
    ids = [s.id for s in zoo.specs()]
    assert ids == ["galaxy_cnn-reference-s0", "galaxy_cnn-reference-s1",
                   "galaxy_cnn-reference+deeper_sharper-s0", "galaxy_cnn-reference+deeper_sharper-s1"]
    assert zoo.specs()[2].factors["train_surveys"] == "reference+deeper_sharper"
    assert zoo.specs()[2].factors["n_train_surveys"] == 2
    for bad in ({"train_surveys": [["hubble"]]}, {"train_surveys": [["reference", "reference"]]},
                {"train_surveys": [["reference"], ["reference"]]}, {"train_surveys": []}):
        obj, key, msg = configure(GalaxyCNN, bad)
        assert obj is None and key == "train_surveys", (bad, msg)


def test_per_question_softmax_matches_a_loop(tiny_data: simbench.DataSplits) -> None:
    model = Z.instantiate(GalaxyCNN(), GalaxyCNN().specs()[0], tiny_data).eval()
    logits = torch.randn(5, 14, dtype=torch.float64) * 5
    want = torch.cat([torch.log_softmax(logits[:, g], 1) for g in Z.question_groups(tiny_data)], 1)
    assert torch.allclose(model.log_fractions(logits), want, atol=1e-12)
    with torch.no_grad():
        out = model(tiny_data.test.x[:7])
    for g in Z.question_groups(tiny_data):
        assert torch.allclose(out[:, g].sum(1), torch.ones(7), atol=1e-5)


def test_survey_mix_assigns_every_kth_image_to_each_survey(tiny_data: simbench.DataSplits) -> None:
    x = tiny_data.train.x[:6]
    mixed = Z.survey_mix(x, ["reference", "deeper_sharper"], seed=3, stream="train")
    idx_a, idx_b = torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5])
    a = apply_survey(x[idx_a], "reference", seed=3, index=idx_a, stream="train/reference")
    b = apply_survey(x[idx_b], "deeper_sharper", seed=3, index=idx_b, stream="train/deeper_sharper")
    assert torch.allclose(mixed[idx_a], a) and torch.allclose(mixed[idx_b], b)
    assert torch.equal(Z.survey_mix(x, ["clean"], 3, "train"), x)


def test_tiny_zoo_trains_and_restores(tiny_data: simbench.DataSplits) -> None:
    zoo = GalaxyCNN(train_surveys=(("reference",), ("reference", "deeper_sharper")), seeds=(0,), width=4,
                    dense=16, epochs=4, batch_size=32, lr=5e-3)
    torch.manual_seed(0)
    init = Z.instantiate(zoo, zoo.specs()[0], tiny_data)
    (_, _), (xv, yv) = Z.training_data(zoo, tiny_data, ["reference"], 0)
    before = Z._val_loss(init, xv, yv, "cpu")
    models = zoo.build(tiny_data, _ctx())
    assert set(models) == {s.id for s in zoo.specs()}
    model = models["galaxy_cnn-reference-s0"]
    assert Z._val_loss(model, xv, yv, "cpu") < before - 0.05  # training lowered the validation loss
    x = xv[:10]
    acts = model.read(x, list(model.readable_layers))
    assert [tuple(a.shape) for a in acts.values()] == [(10, 4 * 16 * 16), (10, 8 * 8 * 8), (10, 16 * 4 * 4),
                                                       (10, 16 * 2 * 2), (10, 16), (10, 16), (10, 14)]
    with torch.no_grad():
        assert torch.allclose(acts["output"], model(x))
    restored = Z.instantiate(zoo, zoo.specs()[0], tiny_data)
    restored.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(restored.eval()(x), model(x))
    assert [tuple(w.shape) for w in model.dense_weights()] == [(16, 16), (16, 14)]


# --------------------------------------------------------------------------
# survey_transfer
# --------------------------------------------------------------------------


def test_regression_scores_match_scipy_and_sklearn() -> None:
    from scipy import stats as sps
    from sklearn.metrics import mean_absolute_error, r2_score

    rng = np.random.default_rng(0)
    y = rng.random((50, 4))
    pred = y + rng.normal(0, 0.2, (50, 4)) + np.array([0, 0.3, -0.1, 0])
    s = sti.regression_scores(torch.from_numpy(pred), torch.from_numpy(y))
    for j in range(4):
        assert math.isclose(s["r"][j], sps.pearsonr(pred[:, j], y[:, j]).statistic, rel_tol=1e-10)
        assert math.isclose(s["r2"][j], r2_score(y[:, j], pred[:, j]), rel_tol=1e-10)
        assert math.isclose(s["mae"][j], mean_absolute_error(y[:, j], pred[:, j]), rel_tol=1e-10)
    const = sti.regression_scores(np.ones((5, 1)), np.arange(5.0)[:, None])
    assert math.isnan(const["r"][0]) and const["r2"][0] < 0


SURVEYS = ("survey_shift/reference", "survey_shift/deeper_sharper", "survey_shift/unseen")


class _Replay(torch.nn.Module):
    """A readable regressor that answers probe ``(row, survey)`` with a prediction the test chose (the truth plus
    noise of a given size per survey), so the verdicts' inputs are set here; ``h1``/``h2`` are fixed nonlinear
    maps of the prediction (``h2`` mostly noise features), layers for the layer-map part."""

    readable_layers = ("h1", "h2", "output")
    default_layer = "output"

    def __init__(self, predictions: torch.Tensor, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("predictions", predictions)  # [surveys, n, targets]
        self.register_buffer("w1", torch.randn(predictions.shape[-1], 6, generator=g))
        self.register_buffer("w2", torch.randn(6, 5, generator=g))
        self.register_buffer("jitter", torch.randn(predictions.shape[1], 5, generator=g))

    def read(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        row, survey = x[:, 0].long(), x[:, 1].long()
        out = self.predictions[survey, row]
        h1 = torch.tanh(out @ self.w1)
        h2 = torch.relu(h1 @ self.w2) + (1.0 + survey[:, None]) * self.jitter[row]
        acts = {"h1": h1, "h2": h2, "output": out}
        return {name: acts[name] for name in layers}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.read(x, ["output"])["output"]

    def dense_weights(self) -> list[torch.Tensor]:
        return [self.w1, self.w2]


def _transfer_store(noise: dict[str, dict[str, float]], seeds: int = 3, n: int = 200,
                    **kwargs: Any) -> FakeStore:
    """A store over three surveys and models that are the truth plus group- and survey-specific noise."""
    rng = np.random.default_rng(1)
    y = torch.from_numpy(rng.dirichlet([1, 1], size=n)).float()
    specs = [simbench.ModelSpec(f"m-{g}-s{s}", {"train_surveys": g, "seed": s}) for g in noise for s in range(seeds)]
    models = {}
    for k, spec in enumerate(specs):
        preds = []
        for p in SURVEYS:
            e = torch.from_numpy(rng.normal(0, noise[spec.factors["train_surveys"]][p.split("/")[1]], (n, 1))).float()
            preds.append(torch.cat([y[:, :1] + e, y[:, 1:] - e], 1))
        models[spec.id] = _Replay(torch.stack(preds), k).eval()
    rows = torch.arange(n, dtype=torch.float32)[:, None]
    probes = [simbench.ProbeSet(p, torch.cat([rows, torch.full((n, 1), float(s))], 1), y)
              for s, p in enumerate(SURVEYS)]
    data = simbench.DataSplits(*(simbench.Split(torch.zeros(2, 2), y[:2]),) * 3, task="regression",
                               meta={"targets": ["yes", "no"], "tasks": {"feature": "yes"}})
    return FakeStore(models, specs, probes, data, **{"metrics": {}, **kwargs})


NOISE_MIX_BETTER = {"A": {"reference": 0.05, "deeper_sharper": 0.2, "unseen": 0.3},
                    "A+B": {"reference": 0.05, "deeper_sharper": 0.05, "unseen": 0.1}}


def _transfer_tables(noise: dict[str, dict[str, float]]) -> dict[str, object]:
    bench = SurveyTransfer(unseen=("survey_shift/unseen",), baseline="A", layer_metric="")
    records = run_benchmark(bench, _transfer_store(noise))
    return {t.key: t.frame for t in SurveyTransfer.tables(records)}


def test_survey_transfer_says_reproduced_when_the_mix_transfers_better() -> None:
    tabs = _transfer_tables(NOISE_MIX_BETTER)
    v = tabs["verdict"]
    assert len(v) == 1 and v["mix"].iloc[0] == "A+B" and v["verdict"].iloc[0].startswith("reproduced")
    assert v["ΔR²"].iloc[0] > 0 and v["ΔMAE"].iloc[0] < 0
    overall = tabs["overall"]
    row = overall[(overall["training mix"] == "A") & (overall["probe set"] == "survey_shift/unseen")].iloc[0]
    assert row["role"] == "unseen survey" and row["models"] == 3 and row["ΔR² %"] < 0
    # the per-task table holds the mean over seeds of the recorded per-model r
    assert list(tabs["per_task_r"]["task"]) == ["feature"]


def test_survey_transfer_says_not_reproduced_when_the_mix_transfers_worse() -> None:
    noise = {"A": {"reference": 0.05, "deeper_sharper": 0.2, "unseen": 0.1},
             "A+B": {"reference": 0.05, "deeper_sharper": 0.05, "unseen": 0.3}}
    v = _transfer_tables(noise)["verdict"]
    assert v["verdict"].iloc[0].startswith("not reproduced")


def test_layer_maps_are_declared_and_read_from_the_store() -> None:
    """One linear-CKA map per model on the ID and unseen surveys, over the model's layers; the records are the
    layer_map statistics of exactly that map (computed here from the layers), with unseen-minus-ID deltas."""
    from simbench_plugins.benchmarks.layer_map.compute import map_summary

    def cka(a: torch.Tensor, b: torch.Tensor) -> float:  # linear CKA by its formula (Kornblith et al. 2019)
        a, b = a.double() - a.double().mean(0), b.double() - b.double().mean(0)
        return float((a.T @ b).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm()))

    store = _transfer_store(NOISE_MIX_BETTER, seeds=2, n=120)
    bench = SurveyTransfer(unseen=("survey_shift/unseen",), baseline="A")
    requests = bench.requests(store)
    assert [r.key for r in requests] == [f"{s.id}@{p}" for p in (SURVEYS[0], SURVEYS[2]) for s in store.specs]
    assert all([src.layer for src in r.sources] == ["h1", "h2", "output"] for r in requests)
    records = run_benchmark(bench, store)
    assert not hasattr(store, "models")  # nothing but the view was there to read
    layer_rows = {(r.statistic, r.model_a, r.probe_set): r for r in records if r.model_b == sti.LAYERS}
    assert len(layer_rows) == 4 * (2 + 4)  # 4 models: block + off-diagonal on ID, both + their deltas unseen
    for spec in store.specs:
        stats = {}
        for probe in (SURVEYS[0], SURVEYS[2]):
            reps = [store.representation(simbench.Source(spec.id, probe, layer)) for layer in ("h1", "h2", "output")]
            declared = store.matrix(f"{spec.id}@{probe}")  # what the benchmark read
            assert torch.allclose(declared, torch.tensor([[cka(a, b) for b in reps] for a in reps],
                                                         dtype=torch.float64), atol=1e-5)
            stats[probe] = map_summary(declared, True)
            for name in ("block_score", "offdiag_mean"):
                row = layer_rows[(name, spec.id, probe)]
                assert row.status == "ok" and row.metric == "linear_cka" and row.n == 120
                assert row.value == stats[probe][name]
        for name in ("block_score", "offdiag_mean"):
            delta = layer_rows[(f"delta_{name}", spec.id, SURVEYS[2])].value
            assert delta == pytest.approx(stats[SURVEYS[2]][name] - stats[SURVEYS[0]][name], abs=1e-12)
    tabs = {t.key: t.frame for t in SurveyTransfer.tables(records)}
    lv = tabs["layer_verdict"]
    assert len(tabs["layer_maps"]) == 4 and list(lv["models"]) == [4, 4]  # one row per statistic and unseen survey
    assert list(lv["p (Holm)"]) == pytest.approx(list(lv["p"]))  # one unseen survey: Holm changes nothing
    # maps of the first model of each group only: requests and rows shrink, the scores do not
    one = SurveyTransfer(unseen=("survey_shift/unseen",), baseline="A", map_models_per_group=1)
    assert [r.key for r in one.requests(store)] == [f"m-{g}-s0@{p}" for p in (SURVEYS[0], SURVEYS[2]) for g in ("A", "A+B")]
    few = run_benchmark(one, store)
    assert {r.model_a for r in few if r.model_b == sti.LAYERS} == {"m-A-s0", "m-A+B-s0"}
    assert sum(r.statistic == "r2" and r.model_b == sti.OVERALL for r in few) == 4 * 3


@dataclass(frozen=True)
class _Boom(simbench.Metric):
    name: ClassVar[str] = "boom"

    def pairwise(self, reps: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError("boom: cannot compare these layers")


def test_a_failed_map_is_a_failed_row_and_the_rest_go_on() -> None:
    store = _transfer_store(NOISE_MIX_BETTER, seeds=1, n=60, metric_classes=[_Boom])
    records = run_benchmark(SurveyTransfer(unseen=("survey_shift/unseen",), baseline="A", layer_metric="boom"),
                            store)
    failed = [r for r in records if r.status == "failed"]
    assert len(failed) == 2 * 2 and all(r.statistic == "block_score" and "boom: cannot" in r.error for r in failed)
    assert not any(r.statistic.startswith("delta_") for r in records)
    # the regression scores do not depend on the maps
    assert sum(r.statistic == "r2" and r.model_b == sti.OVERALL for r in records) == 2 * 3
    # a layer the models lack: a failed row naming it, no request for it
    missing = SurveyTransfer(unseen=("survey_shift/unseen",), baseline="A", layers=("h1", "nope"))
    assert missing.requests(store) == []
    rows = [r for r in run_benchmark(missing, store) if r.status == "failed"]
    assert len(rows) == 4 and all("nope" in r.error for r in rows)


def test_survey_transfer_passes_the_benchmark_kit() -> None:
    from simbench.testing import check_benchmark

    records = check_benchmark(SurveyTransfer)  # its check_example: the kit's models as regressors
    assert any(r.model_b == sti.LAYERS and r.status == "ok" for r in records)


def test_transfer_verdict_and_welch_p() -> None:
    from scipy import stats as sps

    assert str_report.transfer_verdict(0.1, 0.1, -0.1, 0.01).startswith("reproduced")
    # anything short of better r, R², MAE with a significant adjusted p says "not reproduced" plainly
    assert str_report.transfer_verdict(0.1, 0.1, -0.1, 0.3).startswith("not reproduced: better r, R² and MAE")
    assert str_report.transfer_verdict(0.1, 0.1, -0.1, 0.03, alpha=0.01).startswith("not reproduced")
    assert str_report.transfer_verdict(-0.1, 0.1, -0.1, 0.01).startswith("not reproduced: mixed evidence")
    assert str_report.transfer_verdict(0.1, -0.1, -0.1, 0.01).startswith("not reproduced")
    a, b = [0.1, 0.2, 0.3], [0.5, 0.55, 0.7]
    assert math.isclose(str_report.welch_p(a, b), sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert math.isnan(str_report.welch_p([0.1], b))


# --------------------------------------------------------------------------
# issue 26: the control mix, the overlap mix and the declared tests
# --------------------------------------------------------------------------


def test_layer_verdict_is_symmetric_and_plain() -> None:
    assert str_report.layer_verdict(0.6, 0.01, "block score").startswith("reproduced")
    assert str_report.layer_verdict(-0.6, 0.01, "block score").startswith("not reproduced: the opposite")
    assert str_report.layer_verdict(0.6, 0.2, "block score").startswith("not reproduced: the change")
    assert str_report.layer_verdict(math.nan, math.nan, "block score").startswith("not reproduced")


def test_holm_matches_the_step_down_by_hand() -> None:
    adj = str_report.holm([0.01, 0.04, 0.03])
    assert adj == pytest.approx([0.03, 0.06, 0.06])  # 3 x 0.01; max(0.03, 2 x 0.03); max(0.06, 1 x 0.04)
    assert str_report.holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])
    nan_kept = str_report.holm([math.nan, 0.02])
    assert math.isnan(nan_kept[0]) and nan_kept[1] == pytest.approx(0.02)  # a NaN is not in the family


def test_overlap_mix_sees_half_the_galaxies_through_both_surveys(tiny_data: simbench.DataSplits) -> None:
    x, y = tiny_data.train.x[:7], tiny_data.train.y[:7]
    xo, yo = Z.overlap_mix(x, y, ["reference", "deeper_sharper"], seed=3, stream="train")
    assert xo.shape == x.shape and torch.equal(yo, y[torch.tensor([0, 0, 1, 1, 2, 2, 3])])
    for i in range(7):  # image i = galaxy i // 2 through survey i % 2, with image i's own noise
        survey = ("reference", "deeper_sharper")[i % 2]
        want = apply_survey(x[i // 2 : i // 2 + 1], survey, seed=3, index=torch.tensor([i]), stream=f"train/{survey}")
        assert torch.allclose(xo[i : i + 1], want)
    zoo = GalaxyCNN(train_surveys=(("reference", "deeper_sharper"),) * 2, pairing=("random", "overlap"))
    (xr, yr), val_r = Z.training_data(zoo, tiny_data, ["reference", "deeper_sharper"], 3)
    (xov, yov), val_o = Z.training_data(zoo, tiny_data, ["reference", "deeper_sharper"], 3, "overlap")
    assert torch.equal(val_r[0], val_o[0])  # both select their epoch on the same validation images
    assert len(xov) == len(xr) and len(torch.unique(yov, dim=0)) <= (len(yr) + 1) // 2


def test_zoo_pairing_and_extra_surveys() -> None:
    ctrl = {"band_mix": [[1.0, 0.0, 0.0], [0.7, 0.3, 0.0], [0.3, 0.7, 0.0]], "band_gamma": 2.5}
    zoo = GalaxyCNN(train_surveys=(("reference",), ("reference", "deeper_sharper"), ("reference", "deeper_sharper"),
                                   ("reference", "blue")), pairing=("random", "random", "overlap", "random"),
                    extra_surveys={"blue": ctrl})
    labels = list(dict.fromkeys(s.factors["train_surveys"] for s in zoo.specs()))
    assert labels == ["reference", "reference+deeper_sharper", "reference+deeper_sharper-overlap", "reference+blue"]
    assert [s.factors["pairing"] for s in zoo.specs()] == ["random", "random", "overlap", "random"]
    assert zoo.survey_steps("blue")[0] == ("band", {"gamma": 2.5, "scale": 1.0, "mix": tuple(map(tuple, ctrl["band_mix"]))})
    for bad, key in (({"pairing": ["random"]}, "pairing"),
                     ({"train_surveys": [["reference"]], "pairing": ["both"]}, "pairing"),
                     ({"train_surveys": [["reference", "blue"]]}, "train_surveys"),
                     ({"extra_surveys": {"reference": ctrl}}, "extra_surveys"),
                     ({"extra_surveys": {"blue": {"psf_fwhm": 2.0}}}, "extra_surveys.blue.psf_fwhm"),
                     ({"extra_surveys": {"blue": {"nonsense": 1}}}, "extra_surveys.blue")):
        obj, k, msg = configure(GalaxyCNN, bad)
        assert obj is None and k == key, (bad, k, msg)


def test_the_suites_control_survey_is_matched_to_b_and_points_away_from_the_unseen_surveys() -> None:
    """The design argument in suites/survey-shift.toml's header, on noise-free galaxies: D is as far from A as B,
    B's shift points towards both unseen surveys' shifts, D's away from them; the probe set survey_shift/custom is
    the survey D the zoo trains on."""
    import tomllib
    from pathlib import Path

    from simbench_plugins.perturbations.survey import PRESETS, SurveyShift

    suite = tomllib.loads((Path(__file__).resolve().parents[1] / "suites" / "survey-shift.toml").read_text())
    zoo_tab, pert = suite["zoo"], suite["perturbations"][0]
    zoo = GalaxyCNN(train_surveys=tuple(map(tuple, zoo_tab["train_surveys"])), pairing=tuple(zoo_tab["pairing"]),
                    extra_surveys=zoo_tab["extra_surveys"])
    params = {k: v for k, v in pert.items() if k not in ("name", "presets")}
    params["band_mix"] = tuple(map(tuple, params["band_mix"]))
    assert SurveyShift(presets=(), **params).custom_steps() == zoo.survey_steps("bluer_steeper")
    bench = next(b for b in suite["benchmarks"] if b["name"] == "survey_transfer")
    assert bench["control_mix"] == "reference+bluer_steeper" and "bluer_steeper" in zoo_tab["extra_surveys"]

    x = GalaxySynth(size=suite["data"]["size"], n_train=8, n_val=8, n_test=300).load(_ctx(0)).test.x
    quiet = lambda steps: tuple(s for s in steps if s[0] != "noise")  # noqa: E731
    img = {k: apply_survey(x, quiet(PRESETS[k])) for k in PRESETS}
    img["D"] = apply_survey(x, quiet(zoo.survey_steps("bluer_steeper")))

    def rms(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a - b) ** 2).mean((1, 2, 3)).sqrt().mean())

    def cos(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = a.flatten(1), b.flatten(1)
        return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-12)).mean())

    a = img["reference"]
    assert rms(img["D"], a) == pytest.approx(rms(img["deeper_sharper"], a), rel=0.05)
    for unseen in ("redder_shallower_ir", "shallower_blurrier_ir"):
        assert cos(img["deeper_sharper"] - a, img[unseen] - a) > 0.2
        assert cos(img["D"] - a, img[unseen] - a) < -0.2


GROUPS4 = ("A", "A+B", "A+D", "A+B-overlap")
#: each mix's prediction noise on the unseen survey, per scenario (the verdicts' inputs)
SCENARIOS = {
    "diversity": (0.3, 0.1, 0.1, 0.2),  # the control gains as much as the seed's mix
    "resemblance": (0.3, 0.1, 0.3, 0.2),  # only the seed's mix gains; the random mix beats the overlap mix
    "nothing": (0.3, 0.3, 0.1, 0.1),  # the seed's mix does not gain; the overlap mix beats the random mix
}


@functools.lru_cache(maxsize=None)
def _control_tables(scenario: str) -> dict[str, Any]:
    noise = {g: {"reference": 0.05, "deeper_sharper": 0.05, "unseen": u} for g, u in zip(GROUPS4, SCENARIOS[scenario])}
    bench = SurveyTransfer(unseen=("survey_shift/unseen",), baseline="A", seed_mix="A+B", control_mix="A+D",
                           overlap_mix="A+B-overlap", layer_metric="")
    records = run_benchmark(bench, _transfer_store(noise, seeds=4, n=80))
    return {t.key: t.frame for t in SurveyTransfer.tables(records)}


def test_control_says_diversity_resemblance_or_nothing_to_separate() -> None:
    assert _control_tables("diversity")["control"]["verdict"].iloc[0].startswith("diversity")
    resemblance = _control_tables("resemblance")
    assert resemblance["control"]["verdict"].iloc[0].startswith("resemblance")
    assert _control_tables("nothing")["control"]["verdict"].iloc[0].startswith("nothing to separate")
    # the headline table names each question with its verdict, and the verdict table marks the mixes' roles
    summary = resemblance["summary"]
    assert list(summary["question"]) == ["A+B beats A on unseen", "diversity or resemblance on unseen",
                                         "random beats overlap mix on unseen"]
    assert set(resemblance["verdict"]["mix role"]) == {"seed's mix", "control", "overlap"}


def test_overlap_verdict_follows_the_r_difference() -> None:
    better = _control_tables("resemblance")["overlap"]
    assert better["Δr"].iloc[0] > 0 and better["verdict"].iloc[0].startswith("reproduced")
    worse = _control_tables("nothing")["overlap"]
    assert worse["verdict"].iloc[0].startswith("not reproduced: the overlap mix has the significantly higher r")
    assert str_report.overlap_verdict(0.01, 0.4).startswith("not reproduced: higher r for the random mix")


def test_named_mixes_must_exist_and_differ() -> None:
    obj, key, _ = configure(SurveyTransfer, {"seed_mix": "A+B", "control_mix": "A+B"})
    assert obj is None and key == "control_mix"
    bench = SurveyTransfer(unseen=("survey_shift/unseen",), baseline="A", control_mix="A+C", layer_metric="")
    with pytest.raises(ValueError, match="control_mix 'A\\+C' is not a value"):
        run_benchmark(bench, _transfer_store(NOISE_MIX_BETTER))
