"""One process boundary for plugin calls that must be interruptible (``[run] isolation``).

A metric cell normally runs in a worker thread of the run's process, under
``run.cell_timeout``: a metric looping in Python is interrupted, but one stuck
in native code that holds the GIL cannot be, and one that calls ``os._exit``
ends the whole run.  :func:`call_in_process` runs one call in a fresh worker
process instead:

* the process comes from the ``forkserver`` start method (``spawn`` where
  there is none): never a plain ``fork`` of a process that has started torch's
  thread pools or CUDA.  The fork server is started once per run process with
  torch and the core imported, so each cell costs a fork, not an interpreter;
* the child pins torch to ``threads`` threads, loads the run's ``--plugin``
  files under the names the parent gave them (so their classes unpickle), and
  sends back its result or a one-line error;
* at the time limit the process is killed (``SIGKILL``): nothing it holds can
  outlive the cell; a process that ends without a result (``os._exit``, a
  segfault, the OOM killer) is a failed cell naming its exit status;
* Ctrl-C kills the child and reaches the run as ``KeyboardInterrupt``; a
  ``KeyboardInterrupt`` raised by the plugin itself does the same.

Arguments and results travel pickled through a pipe (inputs are copied, never
shared), so the child can modify them freely without touching the run's data.
This module imports neither torch nor the runner at import time.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .errors import MeasurementFailed, one_line

#: modules the fork server imports once, so a cell's process starts with them loaded
PRELOAD = ("torch", "numpy", "pydantic", "pydantic.fields", "simbench.boundary")

#: how long a worker process may take to start (fork, load the --plugin files, unpickle its inputs) before the
#: cell's own time limit starts; the first cell of a run also waits for the fork server to import torch
STARTUP_SECONDS = 300.0
#: the child's first message: it is about to call ``fn`` (a result is a pickle, which never is one byte)
_STARTED = b"S"

_CONTEXT: Any = None
#: importable modules (plugins') to preload too, named by :func:`preload` before the fork server starts
_EXTRA_PRELOAD: list[str] = []


def preload(modules: Sequence[str]) -> None:
    """Have the fork server import ``modules`` too (the plugins a run will isolate), so each cell's process
    starts with them; a no-op once the server runs (the first isolated cell of this process started it)."""
    for name in modules:
        if name not in _EXTRA_PRELOAD and name not in PRELOAD:
            _EXTRA_PRELOAD.append(name)


def _context() -> Any:
    """The multiprocessing context worker processes come from: forkserver (preloaded) where available, else spawn."""
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([*PRELOAD, *_EXTRA_PRELOAD])
        else:  # pragma: no cover - Windows
            ctx = multiprocessing.get_context("spawn")
        _CONTEXT = ctx
    return _CONTEXT


def unavailable() -> str:
    """Why this process cannot start worker processes ('' when it can): a daemonic process (a Dask worker)
    may not have children, so isolation falls back to a thread there."""
    if multiprocessing.current_process().daemon:
        return "this process is a daemon (e.g. a Dask worker) and may not start worker processes"
    return ""


def _child(conn: Any, plugin_files: Sequence[str], threads: int, payload: bytes, environ: dict[str, str]) -> None:
    """The worker process: run ``fn(*args)`` from ``payload`` and send back ``("ok", value)`` or an error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills this process
    # the fork server's environment is the one it started with: give the call the parent's, as a thread has it
    os.environ.clear()
    os.environ.update(environ)
    try:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        try:
            torch.set_num_interop_threads(max(1, int(threads)))
        except RuntimeError:
            pass
        if plugin_files:  # a fresh child of the fork server: none of them is loaded yet
            from pathlib import Path

            from .plugins import _load_module_from_file

            for path in plugin_files:
                _load_module_from_file(Path(path))
        fn, args = pickle.loads(payload)
        conn.send_bytes(_STARTED)  # the time limit counts from here, not from the fork server's start-up
        result: tuple[Any, ...] = ("ok", fn(*args))
    except KeyboardInterrupt:
        result = ("interrupt", "KeyboardInterrupt")
    except MeasurementFailed as exc:
        result = ("error", one_line(exc, typed=False))
    except BaseException as exc:  # noqa: BLE001 - the plugin boundary, SystemExit included
        result = ("error", one_line(exc))
    try:
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # noqa: BLE001 - an unpicklable result is the plugin's failure
        data = pickle.dumps(("error", f"its result cannot be sent back from the worker process ({one_line(exc)})"))
    try:
        conn.send_bytes(data)
        conn.close()
    finally:
        os._exit(0)  # no atexit handlers, no flushing of what a plugin left behind: the result is sent


_START_LOCK = threading.Lock()


def _start(proc: Any) -> None:
    """``proc.start()`` without the parent's ``__main__``: multiprocessing would re-run the parent's main script
    (a user's script, pytest) in every child; ``fn`` is importable by name and needs nothing from it."""
    from multiprocessing import spawn

    with _START_LOCK:
        original = spawn.get_preparation_data

        def without_main(name: str) -> dict[str, Any]:
            data = original(name)
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
            return data

        spawn.get_preparation_data = without_main
        try:
            proc.start()
        finally:
            spawn.get_preparation_data = original


#: module names ``simbench.plugins`` gives ``--plugin`` files (``simbench_file_plugin_<stem>_<digest>``)
FILE_PLUGIN_PREFIX = "simbench_file_plugin_"


class _Pickler(pickle.Pickler):
    """Pickles classes of ``--plugin`` files by module and qualified name, looked up when unpickled.

    The standard pickler insists that ``sys.modules[module].Class is Class``,
    which fails once the same file was loaded again (another registry built in
    this process replaces the module object); the child loads each file once,
    so a name is all it needs.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) and str(getattr(obj, "__module__", "")).startswith(FILE_PLUGIN_PREFIX):
            return _file_plugin_class, (obj.__module__, obj.__qualname__)
        return NotImplemented


def _file_plugin_class(module: str, qualname: str) -> Any:
    """The class ``qualname`` of the loaded ``--plugin`` file module ``module`` (see :class:`_Pickler`)."""
    import sys

    found: Any = sys.modules[module]
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _dumps(obj: Any) -> bytes:
    import io

    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def _exit_status(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def call_in_process(fn: Callable[..., Any], args: Sequence[Any], *, timeout: float = 0.0, threads: int = 1,
                    plugin_files: Sequence[str] = (), what: str = "cell") -> Any:
    """``fn(*args)`` in a fresh worker process; its return value, or :class:`MeasurementFailed` (one line).

    ``fn`` must be importable by name (a module-level function) and ``args``
    picklable; classes from ``plugin_files`` (``--plugin`` files) unpickle
    because the child loads those files first.  ``timeout`` seconds (0: none)
    after the start the process is killed and the call ``timed out after …
    (run.cell_timeout)``.  A process that ends without sending a result fails
    with its exit status.  ``KeyboardInterrupt`` (Ctrl-C in the parent, or
    raised by ``fn``) kills the child and propagates.
    """
    try:
        payload = _dumps((fn, tuple(args)))
    except Exception as exc:  # noqa: BLE001 - e.g. a metric class defined in a notebook
        raise MeasurementFailed(f"cannot be sent to a worker process ({one_line(exc)}); "
                                "set run.isolation = 'thread' to run it in the run's process") from None
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, [str(p) for p in plugin_files], int(threads), payload,
                                            dict(os.environ)),
                       name=f"simbench-{what}"[:60], daemon=True)
    started = time.monotonic()
    running = False  # whether the child has started fn (then the cell's time limit applies)
    try:
        _start(proc)
        send.close()  # the child holds the only writer: EOF when it ends
        data = b""
        while True:
            limit = timeout if running else STARTUP_SECONDS
            left = None if not limit else limit - (time.monotonic() - started)
            if left is not None and left <= 0:
                if running:
                    raise MeasurementFailed(f"timed out after {timeout:g} s (run.cell_timeout); its worker process "
                                            "was killed")
                raise MeasurementFailed(f"its worker process did not start within {STARTUP_SECONDS:g} s")
            if receive.poll(0.2 if left is None else min(0.2, left)):
                try:
                    data = receive.recv_bytes()
                except (EOFError, OSError):
                    data = b""
                if data == _STARTED and not running:
                    running, started, data = True, time.monotonic(), b""
                    continue
                break
            if not proc.is_alive() and not receive.poll(0):
                break
        if not data:
            proc.join(5)
            raise MeasurementFailed(f"its worker process ended without a result ({_exit_status(proc.exitcode)})")
        result = pickle.loads(data)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        receive.close()
        try:
            proc.close()
        except ValueError:  # pragma: no cover - still running after kill + 5 s: left to the OS
            pass
    status = result[0]
    if status == "ok":
        return result[1]
    if status == "interrupt":
        raise KeyboardInterrupt
    raise MeasurementFailed(str(result[1]))
