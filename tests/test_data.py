"""Dataset plugins: digits28 (embedded) and mnist (Hugging Face / local parquet)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import simbench
from simbench.errors import UserError
from simbench.params import configure
from simbench_plugins.data import _impl
from simbench_plugins.data.datasets import Digits28, Mnist


def _ctx(seed: int = 0) -> simbench.RunContext:
    return simbench.RunContext(seed=seed)


@pytest.fixture(scope="module")
def digits012() -> simbench.DataSplits:
    return Digits28(classes=(0, 1, 2)).load(_ctx())


# --------------------------------------------------------------------------
# digits28
# --------------------------------------------------------------------------


def test_digits28_schema(digits012: simbench.DataSplits) -> None:
    d = digits012
    assert d.task == "classification" and d.num_classes == 3 and d.input_shape == (1, 28, 28)
    for split in (d.train, d.val, d.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.long
        assert split.x.shape[1:] == (1, 28, 28) and len(split.x) == len(split.y) > 0
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
        assert set(split.y.tolist()) == {0, 1, 2}
        # MNIST geometry: the digit lives in the central 20x20 box, the 4-pixel frame is empty
        frame = split.x.clone()
        frame[:, :, 4:24, 4:24] = 0
        assert float(frame.abs().max()) == 0.0
    assert d.meta["dataset"] == "digits28" and d.meta["params"]["classes"] == [0, 1, 2]


def test_digits28_images_are_the_sklearn_digits_resized(digits012: simbench.DataSplits) -> None:
    from PIL import Image

    images, targets = _impl.digits_raw()
    keep = np.isin(targets, [0, 1, 2])
    # independent reference: PIL's bilinear resize to 20x20, then a 4-pixel frame
    ref = np.stack(
        [np.asarray(Image.fromarray((a / 16).astype(np.float32), mode="F").resize((20, 20), Image.BILINEAR)) for a in images[keep]]
    )
    ref = np.pad(ref, ((0, 0), (4, 4), (4, 4)))
    x = torch.cat([digits012.train.x, digits012.val.x, digits012.test.x])[:, 0].numpy()
    y = torch.cat([digits012.train.y, digits012.val.y, digits012.test.y]).numpy()
    # the same (image, label) pairs: nothing lost, duplicated or relabelled by the split
    assert len(x) == len(ref)
    dist = torch.cdist(torch.as_tensor(x).reshape(len(x), -1).double(), torch.as_tensor(ref).reshape(len(ref), -1).double())
    nearest = dist.argmin(1)
    assert float(dist.min(1).values.max()) < 1e-4
    assert len(set(nearest.tolist())) == len(ref)
    assert np.array_equal(targets[keep][nearest.numpy()], y)


def test_digits28_split_is_stratified_disjoint_and_deterministic() -> None:
    ds = Digits28(classes=(3, 7), val_fraction=0.2, test_fraction=0.3)
    a, b, c = ds.load(_ctx(0)), ds.load(_ctx(0)), ds.load(_ctx(1))
    images, targets = _impl.digits_raw()
    for label, digit in enumerate((3, 7)):
        n_c = int((targets == digit).sum())
        assert int((a.val.y == label).sum()) == round(0.2 * n_c)
        assert int((a.test.y == label).sum()) == round(0.3 * n_c)
        assert int((a.train.y == label).sum()) == n_c - round(0.2 * n_c) - round(0.3 * n_c)
    # disjoint: no image appears in two splits (sklearn digits are distinct images)
    keys = [{t.numpy().tobytes() for t in s.x} for s in (a.train, a.val, a.test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    # same seed -> identical; other seed -> a different split
    for s1, s2 in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert torch.equal(s1.x, s2.x) and torch.equal(s1.y, s2.y)
    assert not torch.equal(a.test.x, c.test.x)
    # the first test examples already cover both classes (probe sets take a prefix)
    assert set(a.test.y[:10].tolist()) == {0, 1}


def test_stratified_split_counts_property() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=503)
    val, test, train = _impl.stratified_split(y, [0.1, 0.25], np.random.default_rng(5))
    assert sorted(np.concatenate([val, test, train]).tolist()) == list(range(len(y)))
    for c in range(4):
        n_c = int((y == c).sum())
        assert int((y[val] == c).sum()) == round(0.1 * n_c) and int((y[test] == c).sum()) == round(0.25 * n_c)


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"classes": [1, 1]}, "classes"),
        ({"classes": [0, 10]}, "classes"),
        ({"classes": [4]}, "classes"),
        ({"val_fraction": 0.5, "test_fraction": 0.45}, "val_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"classes": ["0", "1"]}, "classes.0"),  # strict: no silent str -> int
    ],
)
def test_digits28_rejects_bad_params(params: dict, key: str) -> None:
    obj, bad_key, message = configure(Digits28, params)
    assert obj is None and bad_key == key and message


# --------------------------------------------------------------------------
# mnist from local parquet files (offline)
# --------------------------------------------------------------------------


def _fake_mnist(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10
    return images, labels


def _write_hf_parquet(path: str, images: np.ndarray, labels: np.ndarray) -> None:
    """The hub's schema: ``image`` (Image feature: PNG bytes) and ``label`` (ClassLabel)."""
    import datasets
    from PIL import Image

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )
    ds = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(im, mode="L") for im in images], "label": labels.tolist()}, features=features
    )
    ds.to_parquet(path)


def _write_plain_parquet(path: str, images: np.ndarray, labels: np.ndarray) -> None:
    """The same data written with pyarrow alone: image = struct<bytes, path>, label = int64."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    blobs = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im, mode="L").save(buf, format="PNG")
        blobs.append({"bytes": buf.getvalue(), "path": None})
    pq.write_table(pa.table({"image": blobs, "label": labels.astype(np.int64)}), path)


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("mnist")
    train, test = _fake_mnist(200, 0), _fake_mnist(60, 1)
    _write_hf_parquet(str(root / "train.parquet"), *train)
    _write_plain_parquet(str(root / "test-0.parquet"), test[0][:30], test[1][:30])
    _write_plain_parquet(str(root / "test-1.parquet"), test[0][30:], test[1][30:])
    return {"root": root, "train": train, "test": test}


def test_mnist_loads_local_parquet_offline(mnist_files: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    root = mnist_files["root"]
    ds, key, msg = configure(
        Mnist,
        {"classes": [0, 1, 2], "val_fraction": 0.25, "data_files": {"train": str(root / "train.parquet"), "test": str(root / "test-*.parquet")}},
    )
    assert ds is not None, (key, msg)
    d = ds.load(_ctx())
    assert d.num_classes == 3 and d.input_shape == (1, 28, 28)
    tr_img, tr_lab = mnist_files["train"]
    te_img, te_lab = mnist_files["test"]
    for split in (d.train, d.val, d.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.long
        assert 0.0 <= float(split.x.min()) and float(split.x.max()) <= 1.0
    # the official test split, all of it, in a shuffled order, pixels exactly PNG / 255
    assert len(d.test) == int(np.isin(te_lab, [0, 1, 2]).sum()) == 18
    want = {(te_img[i].astype(np.float32) / 255).tobytes(): int(te_lab[i]) for i in np.flatnonzero(te_lab < 3)}
    got = {d.test.x[i, 0].numpy().tobytes(): int(d.test.y[i]) for i in range(len(d.test))}
    assert got == want
    # train + val partition the training images of the chosen classes, stratified
    n_c = [int((tr_lab == c).sum()) for c in range(3)]
    assert [int((d.val.y == c).sum()) for c in range(3)] == [round(0.25 * n) for n in n_c]
    assert len(d.train) + len(d.val) == sum(n_c)
    # deterministic
    d2 = ds.load(_ctx())
    assert torch.equal(d.train.x, d2.train.x) and torch.equal(d.test.y, d2.test.y)
    # max_train / max_test cap the sizes
    capped = Mnist(classes=(0, 1, 2), data_files=ds.data_files, max_train=20, max_test=5).load(_ctx())
    assert len(capped.train) == 20 and len(capped.test) == 5 and len(capped.val) >= 1


def test_mnist_missing_local_file_is_a_user_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ds = Mnist(data_files={"train": str(tmp_path / "nope.parquet"), "test": str(tmp_path / "nope.parquet")})
    with pytest.raises(UserError, match="data_files.train: no such file"):
        ds.load(_ctx())


def test_mnist_offline_without_files_says_how_to_get_them(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # both libraries read the variables at import time: set their view too
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(UserError) as info:
        Mnist(cache_dir=str(tmp_path / "empty-cache")).load(_ctx())
    message = str(info.value)
    assert "\n" not in message
    assert "offline" in message and "data_files" in message and "load_dataset('ylecun/mnist')" in message


def test_mnist_params_validation() -> None:
    obj, key, _ = configure(Mnist, {"data_files": {"train": "a.parquet"}})
    assert obj is None and key == "data_files"
    obj, key, _ = configure(Mnist, {"data_files": {"train": "a", "test": ["b", "c"]}})
    assert obj is not None and obj.data_files["test"] == ("b", "c")
    hash(obj)  # usable as a dict key despite the dict-valued parameter
