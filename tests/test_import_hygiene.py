"""Import hygiene: the cheap paths (listing, configuring, ``--help``, the kits) never import torch.

One parametrised test replaces the copies that used to live in the core, metric, data, zoo,
perturbation, conformance, CLI and executor test files.  Each case runs its steps, in order, in one
fresh interpreter and checks after *every* step that none of that step's forbidden modules has been
imported, so a failure names the step that pulled one in.  Because ``sys.modules`` only grows, a
clean sequence implies that each step is clean on its own too, so one interpreter per case loses
nothing against one interpreter per step (each costs a second of start-up on a loaded machine).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

NO_TORCH = ("torch",)

# (what the step does, code run in the case's namespace, modules that must still be absent after it)
CASES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "core": [
        # `import simbench` is what every plugin author pays for: no torch, no pandas, no matplotlib
        ("import simbench", "import simbench", ("torch", "pandas", "matplotlib")),
        ("import the conformance kit", "import simbench.testing", NO_TORCH),
        # dask is an optional extra ([dask]): the core, runner and CLI import without it
        ("import the runner, executors, plan and CLI",
         "import simbench.runner, simbench.executors, simbench.plan, simbench.cli", ("dask", "distributed")),
    ],
    "plugins": [
        # every module a `simbench` entry point names (the built-ins and the study packages)
        ("import every entry-point module",
         """
         from importlib.metadata import entry_points
         import importlib
         modules = sorted({ep.value.partition(":")[0] for ep in entry_points(group="simbench")})
         assert modules, "no simbench entry points: is the package installed?"
         for module in modules:
             importlib.import_module(module)
         """, NO_TORCH),
        ("build the registry", "from simbench.registry import build_registry\nr = build_registry()", NO_TORCH),
        ("list every kind",
         """
         names = {k: r.names(k) for k in ("metric", "zoo", "perturbation", "dataset", "benchmark")}
         assert "linear_cka" in names["metric"] and "mnist_c" in names["perturbation"], names
         """, NO_TORCH),
        ("instantiate every metric with its defaults", "[e.cls() for e in r.entries('metric')]", NO_TORCH),
        ("configure the datasets",
         """
         for name, params in (("digits28", {"classes": [0, 1]}),
                              ("mnist", {"data_files": {"train": "a", "test": "b"}})):
             obj, key, msg = r.configure("dataset", name, params)
             assert obj is not None, (name, key, msg)
         """, NO_TORCH),
        ("list the zoos' model specs",
         """
         for name in ("mlp", "finetuned_cnn", "calibration"):
             obj, key, msg = r.configure("zoo", name, {})
             assert obj is not None and obj.specs(), (name, key, msg)
         """, NO_TORCH),
    ],
    "cli": [
        (f"simbench {' '.join(args)}",
         f"rc = cli.main({args!r}, standalone_mode=False)\nassert rc in (None, 0), rc", NO_TORCH)
        for args in (["--help"], ["list"], ["list", "metrics", "--json"], ["plugins"])
    ],
}
CASES["cli"].insert(0, ("import the CLI", "from simbench.cli import cli", NO_TORCH))

# Runs the steps handed over as JSON; exits 1 with the name of the first step that imported a forbidden module.
DRIVER = textwrap.dedent("""
    import contextlib, io, json, sys, textwrap
    namespace = {}
    for label, code, forbidden in json.loads(sys.argv[1]):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(textwrap.dedent(code), namespace)
        loaded = sorted(m for m in forbidden if m in sys.modules)
        if loaded:
            sys.exit(f"step {label!r} imported {loaded}")
    print("clean")
""")


@pytest.mark.parametrize("case", sorted(CASES))
def test_cheap_paths_do_not_import_heavy_modules(case: str) -> None:
    import json

    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(CASES[case])], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "clean", proc.stderr[-3000:]


def test_the_driver_notices_a_forbidden_import() -> None:
    """The check itself can fail: a step that imports a forbidden module is named."""
    import json

    steps = [("harmless", "import json", ("csv",)), ("imports csv", "import csv", ("csv",))]
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(steps)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "step 'imports csv' imported ['csv']" in proc.stderr, proc.stderr
