from __future__ import annotations

import pytest


@pytest.mark.slow
def test_show_writes_a_gallery_and_rejects_bad_params(tmp_path, cli_here):
    out = tmp_path / "g.png"
    proc = cli_here("show", "mnist_c", "--param", 'corruptions=["stripe", "fog"]', "--n", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = cli_here("show", "mnist_c", "--param", 'corruptions=["stripes"]', "--out", str(out))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "stripes" in bad.stderr
    attack = cli_here("show", "attacks", "--out", str(out))
    assert attack.returncode == 2 and len(attack.stderr.strip().splitlines()) == 1
