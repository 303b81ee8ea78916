"""``simbench new metric NAME``: a plugin package skeleton with its conformance test.

The skeleton is a complete, installable package (``pip install -e .``) whose
metric passes the conformance kit as written, so an author starts from green
tests and edits ``__call__``.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Iterable
from pathlib import Path

from .errors import UserError
from .requirements import DISTRIBUTION

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

_PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "simbench-{dash}"
version = "0.1.0"
description = "The {name} similarity metric for simbench"
requires-python = ">=3.11"
# simbench is published as simbench-metrics (the index's "simbench" is an unrelated project)
dependencies = ["{requirement}"]

[project.optional-dependencies]
dev = ["pytest>=8"]

# simbench finds the plugin through this entry point once the package is installed
[project.entry-points.simbench]
{name} = "{package}.plugin"

[tool.setuptools]
packages = ["{package}"]
'''

_PLUGIN = '''"""The {name} metric, a simbench plugin."""

from __future__ import annotations

from dataclasses import dataclass

import simbench


@dataclass(frozen=True)
class {cls}(simbench.Metric):
    """Cosine similarity of the two representations' centred n x n Gram matrices (edit me)."""

    name = "{name}"
    higher_is_more_similar = True
    symmetric = True
    value_range = (0.0, 1.0)
    # declare only what holds: the conformance kit checks every declared invariance
    invariances = frozenset({{"orthogonal", "isotropic_scaling", "permutation", "translation"}})

    def __call__(self, a, b, **kwargs):  # a: Tensor[n, d1], b: Tensor[n, d2]
        import torch

        def centred_gram(x):
            x = x.to(torch.float64)
            x = x - x.mean(0, keepdim=True)
            return x @ x.T

        ka, kb = centred_gram(a), centred_gram(b)
        norm = ka.norm() * kb.norm()
        if norm == 0 or not torch.isfinite(norm):
            raise ValueError("{name}: a representation is constant (or not finite); similarity is undefined")
        return float((ka * kb).sum() / norm)


@simbench.hookimpl
def register_metrics(register):
    register({cls})
'''

_TEST = '''"""Conformance of {name} with simbench's kit, one test per check."""

import pytest
from simbench.testing import CHECKS, run_check

from {package}.plugin import {cls}


@pytest.mark.parametrize("check", CHECKS)
def test_conformance(check):
    run_check({cls}(), check)
'''

_README = '''# simbench-{dash}

The `{name}` similarity metric as a simbench plugin.

```
pip install -e '.[dev]'
pytest                                   # the conformance kit, one test per check
simbench list metrics                    # {name} is listed, from this package
simbench run quick --set "metrics=[{{name='{name}'}},{{name='linear_cka'}}]"
```

Edit `{package}/plugin.py`: `__call__(a, b)` compares two `Tensor[n, d]`
representations; declare only the invariances that hold. Override
`pairwise(reps)` to compute all pairs at once.
'''


def requirement(version: str | None = None) -> str:
    """The scaffold's dependency on simbench: its distribution name and the versions whose plugin API it
    was written against (``0.1.x`` -> ``>=0.1,<0.2``; from 1.0 on, the same major version)."""
    from ._version import __version__
    major, minor = (int(p) for p in re.findall(r"\d+", version or __version__)[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"{DISTRIBUTION}>={major}.{minor},<{upper}"


def check_name(name: str, taken: Iterable[str] = ()) -> str:
    """``name`` if it can name a new metric package, else a one-line :class:`UserError`.

    snake_case, matched whole (a trailing newline is not a name); not a Python
    keyword, and not ``none``/``true``/``false`` (the class would be ``None``,
    ``True``, ``False``: a syntax error); not a name already registered
    (``taken``: the built-ins' and installed plugins'), which the installed
    package would clash with on every command.
    """
    if not NAME_RE.fullmatch(name):
        raise UserError(f"NAME {name!r}: expected a snake_case metric name, e.g. my_metric")
    cls = class_name(name)
    if keyword.iskeyword(name) or keyword.iskeyword(cls) or cls in dir(builtins):
        raise UserError(f"NAME {name!r}: a Python keyword or built-in ({cls}) cannot name the metric's class; "
                        "choose another name, e.g. my_metric")
    if f"simbench-{name.replace('_', '-')}" == DISTRIBUTION:
        raise UserError(f"NAME {name!r}: the package simbench-{name} would be simbench itself; choose another name")
    if name in set(taken):
        raise UserError(f"NAME {name!r}: a metric of that name is already registered (a built-in or an installed "
                        "plugin); choose another name")
    return name


def class_name(name: str) -> str:
    """The metric class's name: ``my_metric`` -> ``MyMetric``."""
    return "".join(part.capitalize() for part in name.split("_")) or "MyMetric"


def new_metric(name: str, out_dir: Path, taken: Iterable[str] = ()) -> list[Path]:
    """Write the skeleton ``out_dir/simbench-<name>/``; refuse to overwrite an existing directory.

    ``taken``: metric names already registered (:func:`check_name`).
    """
    check_name(name, taken)
    dash = name.replace("_", "-")
    package = f"simbench_{name}"
    cls = class_name(name)
    root = out_dir / f"simbench-{dash}"
    if root.exists():
        raise UserError(f"{root}: already exists; choose another --out or remove it")
    values = {"name": name, "dash": dash, "package": package, "cls": cls, "requirement": requirement()}
    files = {
        root / "pyproject.toml": _PYPROJECT,
        root / "README.md": _README,
        root / package / "__init__.py": f'"""simbench plugin package for the {name} metric."""\n',
        root / package / "plugin.py": _PLUGIN,
        root / "tests" / f"test_{name}.py": _TEST,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    return list(files)
