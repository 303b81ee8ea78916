"""Keep the docs honest: the README's plugin example runs, every hook is documented and tested."""

from __future__ import annotations

import re

from simbench import hookspecs
from simbench.registry import build_registry
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def readme_plugin_source() -> str:
    block = re.search(r"```python\n(# my_metric.py\n.*?)```", README, re.S)
    assert block, "README must show the plugin example"
    return block.group(1)


def test_readme_plugin_example_registers_a_working_metric(tmp_path):
    import torch

    source = readme_plugin_source()
    assert len(source.strip().splitlines()) <= 20
    path = tmp_path / "my_metric.py"
    path.write_text(source)
    registry = build_registry(plugin_files=[str(path)])
    entry = registry.entry("metric", "mean_cosine")
    assert entry.plugin == "my_metric"
    metric = entry.cls()
    a = torch.randn(30, 5)
    assert abs(metric(a, a) - 1.0) < 1e-6
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    assert abs(metric(a, a @ q) - 1.0) < 1e-5  # Gram-based: rotation invariant


def test_every_hook_is_documented_and_in_the_readme_or_architecture():
    arch = (ROOT / "docs" / "architecture.md").read_text()
    for name in dir(hookspecs):
        if name.startswith("register_"):
            assert getattr(hookspecs, name).__doc__, name
    for kind in ("dataset", "zoo", "perturbation", "metric", "benchmark"):
        assert kind in arch


def test_cli_verbs_in_readme():
    from simbench.cli import cli

    for verb in cli.commands:
        assert f"simbench {verb}" in README, verb


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path) -> set[str]:
    """The anchors GitHub gives a markdown file: one per heading (lower case, punctuation dropped, spaces to
    hyphens, repeats numbered) and every explicit ``<a id="...">``."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    found: set[str] = set(re.findall(r'<a id="([^"]+)"', text))
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def test_every_relative_link_in_readme_and_docs_resolves():
    """A link in README.md or docs/*.md to a file of this repository names a file that exists, and an anchor
    (``file.md#section``, ``claims.md#001-...``) names a heading or an ``<a id>`` of that file."""
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
        for match in _LINK.finditer(text):
            target = match.group(1) or match.group(2)
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            where = f"{doc.relative_to(ROOT)}: {target}"
            if not path.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{where} (no such anchor)")
    assert not broken, "\n".join(broken)


def test_readme_reads_top_down():
    """Issue 25 item 7: the README answers its question first, then the verdicts, install, a metric, suites,
    data and further reading, in that order; it names papers by title, not by internal seed numbers in prose."""
    order = ["## The verdicts", "## Install", "## Write your own metric plugin", "## Suites", "## Getting the data",
             "## Further reading"]
    positions = [README.index(h) for h in order]
    assert positions == sorted(positions)
    assert README.index("Grounding Representation Similarity") < positions[0]
    assert not re.search(r"[Ss]eeds? 00\d\s*§", README)  # "seed 001 §3.2" means nothing to a reader
    assert "bench_metrics.py" not in README  # the performance detail lives in docs/performance.md
