"""The cluster runs the driver's versions, checked when connecting.

A node is pickled on the driver and run on a worker: if the two import different
versions of the packages that decide what a node does, tasks fail later in ways
that do not say why (an unpickling error, a missing keyword), or worse, succeed
with other results. Distributed notices and only warns, in a table that scrolls
away. ``check_versions`` asks the scheduler and every connected worker for their
versions through ``Client.get_versions``, before anything is submitted, and turns
a difference into one error line, or one warning per package:

- a major or minor difference of a package in ``CLUSTER_PACKAGES`` (driver against
  scheduler and workers) or ``NODE_PACKAGES`` (driver against workers: the
  scheduler imports no node), or such a package missing on a node while the driver
  has it, raises ``DaskClusterError`` naming the package, both versions and where;
- a patch-level difference of these packages (or a pre-release, development or
  local build of the same release) logs a warning;
- any difference of ``ADVISORY_PACKAGES`` logs a warning, never an error.

Versions are compared as ``packaging`` release tuples (``packaging`` comes with
dask and distributed, which require it).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distributed.versions import VersionMismatchWarning
from packaging.version import InvalidVersion, Version

from .errors import DaskClusterError

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

#: Packages every process of the cluster must share with the driver: they speak
#: distributed's protocol and (un)pickle the graph. ``python`` is the interpreter.
CLUSTER_PACKAGES = ("python", "dask", "distributed", "cloudpickle")

#: Packages the workers must share with the driver: they run the nodes, load and
#: save the datasets and unpickle what the driver built with them. The scheduler
#: does not import them.
NODE_PACKAGES = ("kedro", "kedro-datasets", "numpy", "pandas")

#: The rest of what distributed itself compares. A difference is worth knowing
#: but does not change what a node computes: distributed packs its messages with
#: explicit msgpack options (a format fixed by its specification), tornado and
#: toolz are plumbing, and lz4 is used only where the configuration asks for it.
#: So these warn, never fail.
ADVISORY_PACKAGES = ("msgpack", "tornado", "toolz", "lz4")

# How many processes one message names before it counts the rest.
_NAMED = 3
_PYTHON = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_PYTHON_LEVELS = {"alpha": "a", "beta": "b", "candidate": "rc"}
_LEADING_NUMBERS = re.compile(r"\d+(?:\.\d+)*")

# Levels of a difference, from harmless to blocking.
_SAME, _EXTRA, _PATCH, _MINOR, _MISSING = range(5)


@dataclass(frozen=True)
class Difference:
    """One package that some processes have in another version than the driver."""

    package: str
    driver: str | None
    #: Version (``None``: not installed) -> the processes that have it.
    others: Mapping[str | None, tuple[str, ...]]
    blocking: bool

    def describe(self, introduced: set[str] | None = None) -> str:
        """``pandas 3.1.1 on the driver, 2.2.3 on worker 'w1' (tcp://...)``.

        A worker in ``introduced`` is named without its address; the others are
        added to it: one message gives each worker's address once.
        """
        introduced = set() if introduced is None else introduced
        where = ", ".join(
            f"{_shown(self.package, version)} on {_processes(names, introduced)}"
            for version, names in self.others.items()
        )
        return (
            f"{self.package} {_shown(self.package, self.driver)} on the driver, {where}"
        )


def check_versions(client: Client) -> None:
    """Compare the driver's versions with the scheduler's and the workers'.

    Call it once connected (and once the workers the run waits for have joined),
    before anything is submitted. Workers that join later are not checked, nor a
    worker that does not answer: distributed leaves it out of the answer.

    Raises:
        DaskClusterError: One line naming each package with a major or minor
            difference (or missing on a node), the driver's version, the other
            versions and the processes that have them.
    """
    # "python" is not a distribution: get_versions reports it anyway, and asking
    # for it by name would replace it with None.
    packages = (*CLUSTER_PACKAGES, *NODE_PACKAGES, *ADVISORY_PACKAGES)
    versions = client.get_versions(
        check=False, packages=[p for p in packages if p != "python"]
    )
    names = _worker_names(client)
    differences = find_differences(versions, names)
    for difference in differences:
        if not difference.blocking:
            logger.warning(
                "The Dask cluster runs other versions than the driver: %s. Nodes "
                "should behave the same; install the driver's versions to be sure.",
                difference.describe(),
            )
    introduced: set[str] = set()
    blocking = [d.describe(introduced) for d in differences if d.blocking]
    if blocking:
        raise DaskClusterError(
            f"The Dask cluster at {client.scheduler.address} does not run the "
            f"driver's versions: {'; '.join(blocking)}. Install the same major and "
            "minor versions of these packages on the driver, the scheduler and "
            "every worker."
        )


def find_differences(
    versions: Mapping[str, Any], worker_names: Mapping[str, str] | None = None
) -> list[Difference]:
    """The packages that differ in ``versions``, as ``Client.get_versions``
    returns them (``client``, ``scheduler``, ``workers`` by address: each with a
    ``packages`` mapping, ``None`` for a package that is not installed).

    ``worker_names`` maps a worker's address to its name, to name it in messages.
    """
    worker_names = worker_names or {}
    driver = _packages(versions.get("client"))
    nodes: dict[str, tuple[str, dict[str, Any]]] = {
        "scheduler": ("the scheduler", _packages(versions.get("scheduler")))
    }
    for address, info in sorted((versions.get("workers") or {}).items()):
        nodes[address] = (_worker(address, worker_names.get(address)), _packages(info))

    differences = []
    for package in (*CLUSTER_PACKAGES, *NODE_PACKAGES, *ADVISORY_PACKAGES):
        others: dict[str | None, list[str]] = {}
        level = _SAME
        for key, (label, packages) in nodes.items():
            if key == "scheduler" and package in NODE_PACKAGES:
                continue
            this = _level(package, driver.get(package), packages.get(package))
            if this != _SAME:
                others.setdefault(packages.get(package), []).append(label)
                level = max(level, this)
        if level == _SAME:
            continue
        differences.append(
            Difference(
                package,
                driver.get(package),
                {version: tuple(labels) for version, labels in others.items()},
                blocking=package not in ADVISORY_PACKAGES and level >= _MINOR,
            )
        )
    return differences


@contextmanager
def distributed_version_warning_silenced() -> Iterator[None]:
    """Around ``Client(...)``: drop distributed's ``VersionMismatchWarning``,
    which ``check_versions`` supersedes (it compares every package distributed
    compares, and says the same in one line per package)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=VersionMismatchWarning)
        yield


def _packages(info: Any) -> dict[str, Any]:
    if isinstance(info, Mapping) and isinstance(info.get("packages"), Mapping):
        return dict(info["packages"])
    return {}


def _worker_names(client: Client) -> dict[str, str]:
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return {
        address: str(info.get("name", address)) for address, info in workers.items()
    }


def _worker(address: str, name: str | None) -> str:
    if name is None or name == address:
        return f"worker {address}"
    return f"worker {name!r} ({address})"


def _processes(labels: tuple[str, ...], introduced: set[str]) -> str:
    named = []
    for label in labels[:_NAMED]:
        named.append(_short(label) if label in introduced else label)
        introduced.add(label)
    if len(labels) > _NAMED:
        named.append(f"{len(labels) - _NAMED} more")
    if len(named) == 1:
        return named[0]
    return ", ".join(named[:-1]) + " and " + named[-1]


def _short(label: str) -> str:
    """``worker 'w1' (tcp://...)`` without its address."""
    if label.endswith(")") and " (" in label:
        return label[: label.rindex(" (")]
    return label


def _shown(package: str, version: str | None) -> str:
    if version is None:
        return "missing"
    if package == "python" and version.endswith(".final.0"):
        return version.removesuffix(".final.0")
    return version


def _level(package: str, driver: str | None, other: str | None) -> int:
    """How far ``other`` is from the driver's ``driver`` version."""
    if driver == other:
        return _SAME
    if driver is None or other is None:
        return _MISSING if other is None else _EXTRA
    mine, theirs = _parsed(package, driver), _parsed(package, other)
    if mine is None or theirs is None:
        return _MINOR  # cannot tell how far apart: treat as incompatible
    if _major_minor(mine[0].release) != _major_minor(theirs[0].release):
        return _MINOR
    if mine[0] == theirs[0] and mine[1] and theirs[1]:
        return _SAME  # one version spelt two ways: 1.0 and 1.0.0
    return _PATCH  # patch level, or pre-release/dev/local builds of one release


def _parsed(package: str, text: str) -> tuple[Version, bool] | None:
    """``text`` as a ``packaging`` version, and whether it was read exactly.

    Python's ``3.13.0.candidate.1`` (how distributed reports ``sys.version_info``)
    reads as ``3.13.0rc1``; a version ``packaging`` refuses, by its leading
    numbers (not exactly); ``None`` if it has none.
    """
    if package == "python":
        match = _PYTHON.match(text)
        if match is None:
            return None
        level, _, serial = text[match.end() :].strip(".").partition(".")
        if level in ("", "final"):
            return Version(match.group(0)), True
        pre = _PYTHON_LEVELS.get(level)
        if pre is None or not serial.isdigit():
            return Version(match.group(0)), False
        return Version(f"{match.group(0)}{pre}{serial}"), True
    try:
        return Version(text), True
    except InvalidVersion:
        match = _LEADING_NUMBERS.match(text.strip())
        return (Version(match.group(0)), False) if match else None


def _major_minor(release: tuple[int, ...]) -> tuple[int, int]:
    padded = (*release, 0, 0)
    return padded[0], padded[1]
