"""Worker plugins a run installs on the cluster.

Dask pickles a plugin and runs its ``setup`` on every worker, including those that
join later. These plugins must work on a worker that cannot import this project
(that is what ``ShipCode`` is for), so this module imports nothing but the
standard library and ``distributed``, and is pickled by value (see
``by_value``): workers receive the code of these classes, not a reference.
"""

from __future__ import annotations

import compileall
import contextlib
import hashlib
import io
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
from distributed.diagnostics.plugin import WorkerPlugin


@contextlib.contextmanager
def by_value() -> Iterator[None]:
    """Pickle this module's classes by value while registering a plugin."""
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


class ShipCode(WorkerPlugin):
    """Puts a copy of the project package on every worker's ``sys.path``.

    Args:
        package_dir: The package's directory (``src/<package>``) in the driver.

    A worker that already imported another version of the package forgets it, so
    nodes run the code the driver has. The copy is compiled to bytecode once, when
    it is unpacked: each run imports it afresh (``teardown`` forgets it), and a
    worker that does not write bytecode (``PYTHONDONTWRITEBYTECODE``, common in
    containers) would otherwise compile every module at every run.
    """

    def __init__(self, package_dir: Path):
        self.package = package_dir.name
        self.archive = _zip_package(package_dir)
        self.version = hashlib.sha1(self.archive, usedforsecurity=False).hexdigest()[
            :12
        ]

    def setup(self, worker: Any) -> None:
        root = self._root(worker)
        if not (root / self.package).is_dir():
            with zipfile.ZipFile(io.BytesIO(self.archive)) as archive:
                archive.extractall(root)
            compileall.compile_dir(root / self.package, quiet=2)
        self._forget_modules(root, shipped=False)  # other versions of the package
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))

    def teardown(self, worker: Any) -> None:
        """Take the shipped copy off ``sys.path`` and forget the modules loaded
        from it: the worker is left as it was before the run."""
        if any(
            getattr(plugin, "version", None) == self.version
            for plugin in worker.plugins.values()
            if plugin is not self
        ):
            return  # another run ships the same code and still needs it
        root = self._root(worker)
        while str(root) in sys.path:
            sys.path.remove(str(root))
        self._forget_modules(root, shipped=True)

    def _root(self, worker: Any) -> Path:
        return Path(worker.local_directory) / f"kedro-code-{self.version}"

    def _forget_modules(self, root: Path, shipped: bool) -> None:
        """Drop the package's modules loaded from ``root`` (``shipped``) or not."""
        for name in [m for m in sys.modules if m.split(".")[0] == self.package]:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(root)) == shipped:
                del sys.modules[name]


def _zip_package(package_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(package_dir.parent).as_posix())
    return buffer.getvalue()


def erred_on(dask_scheduler: Any, key: Any) -> list[str]:
    """The workers on which the task ``key`` failed (run on the scheduler)."""
    task = dask_scheduler.tasks.get(key)
    return sorted(getattr(task, "erred_on", None) or ())


def unrunnable(dask_scheduler: Any, token: str) -> dict[Any, dict[str, float]]:
    """The tasks of the run ``token`` that no connected worker can take, with the
    resources each asks for (run on the scheduler)."""
    return {
        task.key: dict(task.resource_restrictions or {})
        for task in dask_scheduler.unrunnable
        if isinstance(task.key, tuple) and str(task.key[0]).endswith(token)
    }
