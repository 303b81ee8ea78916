"""Hashing the code of a plugin that comes from an installed distribution costs milliseconds."""

from __future__ import annotations

import hashlib
import importlib.metadata
import time
from pathlib import Path

from simbench import cache


def test_installed_file_is_identified_by_its_distribution_record():
    import pluggy

    file = Path(pluggy.__file__)
    cache._distributions_by_package.cache_clear()
    cache._record_digest.cache_clear()
    start = time.perf_counter()
    stamp = cache._installed_distribution(file)
    first = time.perf_counter() - start
    dist = importlib.metadata.distribution("pluggy")
    record = dist.read_text("RECORD")
    assert stamp == f"{dist.metadata['Name']}=={dist.version}:{hashlib.sha256(record.encode()).hexdigest()}"
    # the old walk resolved every file of every distribution (5-10 s); a generous bound, not a benchmark
    assert first < 3.0
    start = time.perf_counter()
    for _ in range(100):
        assert cache._installed_distribution(file) == stamp
    assert time.perf_counter() - start < 1.0


def test_a_source_checkout_file_is_not_an_installed_distribution(tmp_path):
    assert cache._installed_distribution(Path(cache.__file__)) == ""  # editable: hashed from its source
    fake = tmp_path / "site-packages" / "not_a_package" / "mod.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("x = 1\n")
    assert cache._installed_distribution(fake) == ""
