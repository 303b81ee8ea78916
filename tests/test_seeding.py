"""The one seed helper (``simbench.seeding``) and the rule that nothing else derives seeds by hand."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from simbench.seeding import derive_seed, numpy_rng, torch_generator

ROOT = Path(__file__).resolve().parents[1]


def test_same_seed_and_tags_give_the_same_seed_in_another_process():
    here = derive_seed(2026, "mlp", "init", (784, 64, 10), 3)
    code = "from simbench.seeding import derive_seed; print(derive_seed(2026, 'mlp', 'init', (784, 64, 10), 3))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(there) == here


def test_a_known_value_pins_the_encoding():
    # SHA-256 of the JSON text [0,"stream"], first 8 bytes little-endian, top 63 bits: computed by hand below
    import hashlib

    digest = hashlib.sha256(b'[0,"stream"]').digest()
    assert derive_seed(0, "stream") == int.from_bytes(digest[:8], "little") >> 1


def test_tags_name_distinct_streams():
    seeds = {
        derive_seed(0),
        derive_seed(0, "a"),
        derive_seed(0, "b"),
        derive_seed(0, "a", "b"),
        derive_seed(0, "b", "a"),  # order matters (a hash *sum* of tags would make these meet)
        derive_seed(0, "ab"),  # tag boundaries matter (a joined string would make these meet)
        derive_seed(0, "a,b"),
        derive_seed(0, ("a", "b")),
        derive_seed(0, 1),
        derive_seed(0, "1"),  # an int and its digits are different tags
        derive_seed(1, "a"),
    }
    assert len(seeds) == 11


def test_seeds_are_not_masked_to_32_bits():
    # SeedSequence([seed & 0xFFFFFFFF, ...]) made seeds 2**32 apart share every stream
    assert derive_seed(5, "x") != derive_seed(5 + 2**32, "x")
    assert derive_seed(-1, "x") != derive_seed(2**32 - 1, "x") != derive_seed(2**64 - 1, "x")


def test_numpy_and_python_integers_and_whole_floats_name_the_same_stream():
    # repr(np.int64(3)) is 'np.int64(3)' under numpy 2 and '3' under numpy 1: the tag must not depend on it
    assert derive_seed(np.int64(7), np.int32(3), (np.int64(1), 2)) == derive_seed(7, 3, (1, 2)) == derive_seed(7, 3.0, [1, 2])
    assert derive_seed(7, 0.5) != derive_seed(7, 0.25)


@pytest.mark.parametrize("bits", [1, 31, 32, 63, 64])
def test_the_result_fits_the_requested_width(bits):
    values = [derive_seed(s, "w", bits=bits) for s in range(200)]
    assert all(0 <= v < 2**bits for v in values)
    if bits >= 31:
        assert max(values) >= 2 ** (bits - 4)  # the high bits are used, not just the low ones


def test_bad_tags_and_widths_are_refused():
    with pytest.raises(TypeError, match="seed tag"):
        derive_seed(0, object())
    with pytest.raises(ValueError, match="bits"):
        derive_seed(0, bits=0)


def test_generators_draw_the_stream_of_their_seed():
    assert np.array_equal(numpy_rng(3, "boot").integers(0, 10**9, 5),
                          np.random.default_rng(derive_seed(3, "boot")).integers(0, 10**9, 5))
    assert torch.equal(torch.rand(4, generator=torch_generator(3, "init")),
                       torch.rand(4, generator=torch.Generator().manual_seed(derive_seed(3, "init"))))
    assert not torch.equal(torch.rand(4, generator=torch_generator(3, "init")),
                           torch.rand(4, generator=torch_generator(3, "order")))


def test_importing_the_helper_imports_neither_numpy_nor_torch():
    code = "import sys, simbench.seeding; print(any(m in sys.modules for m in ('torch', 'numpy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------
# Nothing else derives seeds by hand
# --------------------------------------------------------------------------

#: calls that seed a generator: their argument must be a seed, not arithmetic on one
SEEDING_CALLS = {"manual_seed", "default_rng", "seed", "RandomState", "Generator"}
#: names that only a hand-made derivation uses
DERIVATION_NAMES = {"SeedSequence", "crc32"}


def hand_made_seeds(path: Path) -> list[str]:
    """Every place in ``path`` that derives a seed without :mod:`simbench.seeding`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in DERIVATION_NAMES:
            found.append(f"{path.name}:{node.lineno} uses {node.attr}")
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in SEEDING_CALLS:
                for arg in node.args:
                    if any(isinstance(n, (ast.BinOp, ast.List, ast.Tuple)) for n in ast.walk(arg)):
                        found.append(f"{path.name}:{node.lineno} seeds {name}() with arithmetic on a seed")
    return found


def test_the_check_finds_planted_derivations(tmp_path):
    planted = tmp_path / "bad.py"
    planted.write_text(
        "import zlib, numpy as np, torch\n"
        "g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(b'x'))\n"
        "r = np.random.default_rng([seed & 0xFFFFFFFF, 3])\n"
        "s = np.random.SeedSequence([seed, 1])\n"
        "ok = torch.Generator().manual_seed(int(seed))\n"
    )
    assert sorted(hand_made_seeds(planted)) == [
        "bad.py:2 seeds manual_seed() with arithmetic on a seed",
        "bad.py:2 uses crc32",
        "bad.py:3 seeds default_rng() with arithmetic on a seed",
        "bad.py:4 uses SeedSequence",
    ]


def test_only_the_seed_helper_derives_seeds():
    files = [p for folder in ("simbench", "plugins") for p in sorted((ROOT / folder).rglob("*.py"))
             if p != ROOT / "simbench" / "seeding.py"]
    found = [hit for p in files for hit in hand_made_seeds(p)]
    assert not found, "seeds derived by hand (use simbench.seeding):\n" + "\n".join(found)


def test_a_change_to_the_seed_helper_invalidates_every_cache_entry(tmp_path, monkeypatch):
    # plugin code hashes stop at the core, so the helper's source is in every key
    from simbench import cache

    store = cache.TensorCache(tmp_path)
    before = store.key("zoo", {"zoo": "mlp"})
    assert before == store.key("zoo", {"zoo": "mlp"})
    monkeypatch.setattr(cache, "SEEDING_HASH", "edited")
    assert store.key("zoo", {"zoo": "mlp"}) != before
