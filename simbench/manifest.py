"""The run directory's manifest: what ran, on what, with which code (schema: docs/results.md).

One entry per invocation, so a resumed run keeps the history of every
process that worked on it; :func:`finish_manifest` re-reads the file and
updates only its own invocation's entry.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from typing import Any

from . import provenance
from .errors import UserError
from .registry import Registry
from .results import RunDir
from .suite import Suite


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        index = int(device[5:]) if device.startswith("cuda:") else torch.cuda.current_device()
        return f"{device} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _file_size(path: str) -> int | None:
    """Size in bytes of a data file the suite names (None if it vanished since it was hashed)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def start_manifest(run_dir: RunDir, suite: Suite, registry: Registry, device: str,
                   warn: Callable[[str], None]) -> dict[str, Any]:
    """Read (or start) the run directory's manifest for a new invocation of ``suite``; refuse another suite's."""
    from ._version import __version__

    previous: dict[str, Any] | None = None
    if run_dir.manifest_path.exists():
        try:
            previous = run_dir.read_manifest()
        except UserError:
            previous = None  # a damaged manifest: rewritten below; the cells carry their own suite hash
            warn(f"{run_dir.manifest_path}: damaged; writing a new one")
        if previous is not None and previous.get("suite", {}).get("sha256") != suite.sha256:
            raise UserError(
                f"{run_dir.path}: holds a run of a different suite "
                f"(sha256 {str(previous.get('suite', {}).get('sha256', '?'))[:12]}); "
                "use --fresh to start over or --run-dir to choose another directory"
            )
    plugins = {
        name: {"source": info.source, "distribution": info.distribution, "version": info.version,
               "location": info.location, "registered": info.registered}
        for name, info in registry.plugins.items()
    }
    revision = provenance.simbench_revision()
    manifest = {
        "simbench_version": __version__,
        "simbench_revision": revision,
        "suite": {
            "name": suite.name,
            "path": str(suite.path),
            "sha256": suite.sha256,
            "overrides": list(suite.overrides),
            "description": suite.description,
            "data_files": dict(suite.data_files),
            "data_file_bytes": {path: _file_size(path) for path in suite.data_files},
        },
        # kept for readers of older manifests: now simbench's own revision, never the suite file's repository
        "git_revision": revision,
        "device": describe_device(device),
        "device_type": device,
        "seed": suite.seed,
        "threads": int(suite.run["threads"]),
        "versions": provenance.versions(),
        "plugins": plugins,
        "data": {"name": suite.data.name, "params": suite.data.params},
        "zoo": {"name": suite.zoo.name, "params": suite.zoo.params},
        "metrics": {u.label: {"name": u.name, "params": u.params} for u in suite.metrics},
        "benchmarks": {u.label: {"name": u.name, "params": u.params} for u in suite.benchmarks},
        "started": (previous or {}).get("started", provenance.now()),
        "finished": None,
        "invocations": list((previous or {}).get("invocations", [])) + [{"started": provenance.now(), "pid": os.getpid()}],
    }
    for key in ("data_fingerprint", "n_models", "models", "held_out_models", "probe_sets", "cell_order"):
        if previous and key in previous:
            manifest[key] = previous[key]
    run_dir.write_manifest(manifest)
    return manifest


def finish_manifest(run_dir: RunDir, manifest: dict[str, Any], **update: Any) -> None:
    """Re-read the manifest and update *this* invocation's entry, so no invocation is ever lost."""
    try:
        current = run_dir.read_manifest()
    except UserError:
        current = manifest
    invocations = list(current.get("invocations", []))
    mine = manifest["invocations"][-1]
    for i, entry in enumerate(invocations):
        if entry.get("started") == mine["started"] and entry.get("pid") == mine.get("pid"):
            invocations[i] = {**entry, **update.pop("invocation", {})}
            break
    else:
        invocations.append({**mine, **update.pop("invocation", {})})
    current.update(manifest | {"invocations": invocations})
    current.update(update)
    run_dir.write_manifest(current)
