"""The forkserver that the worker processes of an embedded LocalCluster fork from.

Dask spawns every worker process of a LocalCluster: each starts an interpreter and
imports Dask, then, at its first task, Kedro, this runner and the module of the
node's function. The first LocalCluster a process starts forks its workers from
one forkserver instead (``distributed.worker.multiprocessing-method``), which
imports all of that once: Dask and the libraries Dask's own forkserver preloads,
this runner's worker side with Kedro, and the modules its starter names (``kedro
run`` names the project's pipelines), and configures the Kedro project as a
worker's first node would. A forked worker runs its first node at once.

``start`` starts it ahead of the cluster, so that it imports while the driver does
something else: ``kedro run`` starts it as soon as it knows that the run starts an
embedded cluster, before it imports distributed and Kedro loads the project
(``local_workers.start_worker_forkserver``). Otherwise the cluster starts it
(``take``).

The forkserver keeps the environment and console of its start for as long as the
process lives, so later clusters of the same process (a notebook's next run) spawn
their workers, which see the process as it is then.

The imports run in the forkserver through ``preimport``, which leaves out a module
that fails to import, whatever the error: multiprocessing's own preloading skips
only an ``ImportError`` and would die of any other, and with it every worker. A
worker that needs such a module imports it itself, and its node reports the error.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress

import dask.config

from .interrupts import block_sigint

START_METHOD_KEY = "distributed.worker.multiprocessing-method"
PRE_SPAWN_KEY = "distributed.nanny.pre-spawn-environ"
SETUP_VARIABLE = "KEDRO_DASK_FORKSERVER"
"""The environment variable that tells ``preimport``, in JSON, the modules to
import, the project package to configure, the forkserver's own ``PYTHONPATH`` and
the driver's pid; set for the forkserver's start only."""

_METHOD = "forkserver"
_DASK_HASH_SEED = "6640"  # Dask's own, see distributed.nanny
_DASK_START_METHOD = "spawn"  # Dask's default, see distributed.yaml
_RUNNER_PACKAGE = __name__.rpartition(".")[0]
_WORKER_MODULES = (f"{_RUNNER_PACKAGE}.worker",)
"""What every worker of a run imports: the runner's worker side, with Kedro."""
_lock = threading.Lock()
_started = False
_taken = False


def usable() -> bool:
    """Whether worker processes can fork from this forkserver: Dask would spawn
    them (its default start method) and the platform has forkservers."""
    return (
        _start_method() == "spawn"
        and _METHOD in multiprocessing.get_all_start_methods()
    )


def start(environ: Mapping[str, str], modules: Sequence[str] = ()) -> None:
    """Start the forkserver now, unless it has started or cannot be used.

    It imports Dask's preloads, the runner's worker side and ``modules``, and
    configures the Kedro project this process runs (if any), in the
    environment a Nanny gives a worker process it spawns (Dask's
    ``distributed.nanny.pre-spawn-environ``, its fixed ``PYTHONHASHSEED``) and
    ``environ`` (the worker processes' Dask logging configuration, read when
    Dask is imported). SIGINT is blocked in it and in every worker forked from
    it: Ctrl-C is the driver's (see ``worker_setup``).
    """
    global _started  # noqa: PLW0603 - once per process
    with _lock:
        if _started or not usable():
            return
        _started = True
        setup = {
            "modules": list(dict.fromkeys([*_WORKER_MODULES, *modules])),
            "package": _project_package(),
            "pythonpath": os.environ.get("PYTHONPATH"),
            "driver": os.getpid(),
        }
        context = multiprocessing.get_context(_METHOD)
        # Only preimport: it imports Dask's preloads itself, in the forkserver, so
        # that this process need not import distributed to name them.
        context.set_forkserver_preload([f"{__package__}.preimport"])
        variables = {
            **_pre_spawn_environ(),
            **environ,
            # This process's path (``kedro run`` adds the project's ``src``), which
            # the forkserver of Python < 3.12 does not get before it imports.
            "PYTHONPATH": os.pathsep.join(path for path in sys.path if path),
            SETUP_VARIABLE: json.dumps(setup),
        }
        with _sigint_blocked(), _environment(variables):
            multiprocessing.forkserver.ensure_running()


def _start_method() -> str:
    """How Dask starts worker processes: as the user's Dask configuration says,
    else Dask's default, also before ``distributed`` (which adds its defaults to
    the configuration) is imported."""
    method: str = dask.config.get(START_METHOD_KEY, default=_DASK_START_METHOD)
    return method


def take(environ: Mapping[str, str]) -> bool:
    """Whether the LocalCluster starting now forks its worker processes from the
    forkserver (started now if need be): the process's first, if usable."""
    global _taken  # noqa: PLW0603 - once per process
    if not usable():
        return False
    with _lock:
        first, _taken = not _taken, True
    if first:
        start(environ)
    return first


def _project_package() -> str | None:
    """The package of the Kedro project this process runs, if Kedro configured
    one. Not imported here: importing Kedro's project module applies a logging
    configuration."""
    project = sys.modules.get("kedro.framework.project")
    return getattr(project, "PACKAGE_NAME", None)


def _pre_spawn_environ() -> dict[str, str]:
    """What a Nanny sets before spawning a worker process (``Nanny.__init__``):
    its ``PYTHONHASHSEED`` gives every worker the same hashes of strings."""
    variables = {
        name: str(value)
        for name, value in (dask.config.get(PRE_SPAWN_KEY, default=None) or {}).items()
    }
    if variables.get("PYTHONHASHSEED") in (None, "0"):
        variables["PYTHONHASHSEED"] = _DASK_HASH_SEED
    return variables


def import_dask_preloads() -> None:
    """Import, in the calling thread, what Dask's ``get_mp_context`` imports in
    the thread that starts a cluster's first worker process (Dask's forkserver
    preloads: pandas among them), when worker processes fork from a forkserver:
    this one, or one the user's Dask configuration asks for.

    A cluster starting in the background while Kedro loads the project would
    import pandas there while the main thread imports it for the catalog. A
    Ctrl-C interrupting the main thread's import then broke the other thread's
    (a half-imported pyarrow), and Dask printed the failed worker start with a
    traceback. Imported first in the main thread, a Ctrl-C just stops the run.
    """
    if not (usable() or _start_method() == _METHOD):
        return
    for name in dask_preloads():
        with suppress(ImportError):
            importlib.import_module(name)


def dask_preloads() -> list[str]:
    """What Dask's own forkserver imports (``distributed.utils.get_mp_context``)."""
    try:
        from distributed.versions import optional_packages, required_packages
    except ImportError:  # moved: Dask itself is enough
        return ["distributed"]
    return ["distributed", *required_packages, *optional_packages]


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in the calling thread, hence in the processes it starts;
    then as it was."""
    previous = block_sigint()
    try:
        yield
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """``variables`` set in this process's environment for processes started
    meanwhile, as a Nanny sets them; then as they were."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
