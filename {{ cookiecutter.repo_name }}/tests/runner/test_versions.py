"""``versions``: the driver's versions against the scheduler's and the workers'.

The data is what ``Client.get_versions`` returns on the session cluster (the same
environment everywhere), with the versions of one process changed where a test
needs a difference. A cluster of truly mixed environments is the starter's
``tests/test_versions.py``.
"""

from __future__ import annotations

import copy
import logging
import warnings

import pytest
from distributed import Client
from distributed.versions import VersionMismatchWarning

from {{ cookiecutter.python_package }}.runner.errors import DaskClusterError
from {{ cookiecutter.python_package }}.runner.versions import (
    ADVISORY_PACKAGES,
    CLUSTER_PACKAGES,
    NODE_PACKAGES,
    check_versions,
    distributed_version_warning_silenced,
    find_differences,
)

LOGGER = "{{ cookiecutter.python_package }}.runner.versions"
CHECKED = (*CLUSTER_PACKAGES, *NODE_PACKAGES, *ADVISORY_PACKAGES)


@pytest.fixture(scope="module")
def real_versions(dask_cluster) -> dict:
    """``get_versions`` of the session cluster, every checked package asked for."""
    with Client(
        dask_cluster.scheduler_address, set_as_default=False, timeout=10
    ) as client:
        return client.get_versions(packages=[p for p in CHECKED if p != "python"])


@pytest.fixture
def versions(real_versions) -> dict:
    """A copy to change."""
    return copy.deepcopy(real_versions)


def first_worker(versions: dict) -> str:
    return sorted(versions["workers"])[0]


def set_version(versions: dict, where: str, package: str, version: str | None):
    """Set ``package`` to ``version`` on ``where``: ``client``, ``scheduler`` or a
    worker's address."""
    info = (
        versions["workers"][where] if where in versions["workers"] else versions[where]
    )
    info["packages"][package] = version


def bump(version: str, part: int) -> str:
    """``version`` with its ``part``-th number (0: major) raised by one."""
    numbers = version.split(".")
    numbers[part] = str(int(numbers[part]) + 1)
    return ".".join(numbers)


def blocking_line(versions: dict) -> str:
    return "; ".join(d.describe() for d in find_differences(versions) if d.blocking)


def test_get_versions_reports_every_checked_package_everywhere(real_versions):
    assert len(real_versions["workers"]) == 2
    processes = [
        real_versions["client"],
        real_versions["scheduler"],
        *real_versions["workers"].values(),
    ]
    for info in processes:
        assert set(CHECKED) <= set(info["packages"]), sorted(info["packages"])
        assert info["packages"]["python"].count(".") == 4  # 3.11.7.final.0


def test_one_environment_everywhere_is_no_difference(versions, inspector, caplog):
    assert find_differences(versions) == []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        check_versions(inspector)  # the real cluster: nothing raised
    assert caplog.records == []


@pytest.mark.parametrize("package", ["dask", "distributed", "cloudpickle", "pandas"])
@pytest.mark.parametrize("part", [0, 1])
def test_a_major_or_minor_difference_on_a_worker_blocks(versions, package, part):
    worker = first_worker(versions)
    driver = versions["client"]["packages"][package]
    theirs = bump(driver, part)
    set_version(versions, worker, package, theirs)

    (difference,) = find_differences(versions)

    assert difference.blocking
    assert difference.describe() == (
        f"{package} {driver} on the driver, {theirs} on worker {worker}"
    )


def test_the_scheduler_is_checked_for_cluster_packages_only(versions):
    set_version(versions, "scheduler", "distributed", "2020.1.0")
    set_version(versions, "scheduler", "pandas", None)  # the scheduler runs no node
    set_version(versions, "scheduler", "kedro", "0.1.0")

    (difference,) = find_differences(versions)

    assert difference.package == "distributed"
    assert difference.blocking
    assert "2020.1.0 on the scheduler" in difference.describe()


def test_python_is_compared_by_its_minor_version(versions):
    worker = first_worker(versions)
    major, minor, patch, *_ = versions["client"]["packages"]["python"].split(".")
    set_version(versions, worker, "python", f"{major}.{int(minor) + 1}.0.final.0")
    set_version(
        versions, "scheduler", "python", f"{major}.{minor}.{int(patch) + 1}.final.0"
    )

    (difference,) = find_differences(versions)

    assert difference.blocking
    assert difference.describe() == (
        f"python {major}.{minor}.{patch} on the driver, "
        f"{major}.{minor}.{int(patch) + 1} on the scheduler, "
        f"{major}.{int(minor) + 1}.0 on worker {worker}"
    )


def test_a_package_missing_on_a_worker_blocks(versions):
    worker = first_worker(versions)
    set_version(versions, worker, "kedro", None)

    assert blocking_line(versions) == (
        f"kedro {versions['client']['packages']['kedro']} on the driver, "
        f"missing on worker {worker}"
    )


def test_a_package_the_driver_lacks_only_warns(versions):
    set_version(versions, "client", "numpy", None)

    (difference,) = find_differences(versions)

    assert not difference.blocking
    assert difference.describe().startswith("numpy missing on the driver, ")


@pytest.mark.parametrize(
    ("driver", "theirs"),
    [
        ("2.2.3", "2.2.4"),  # patch
        ("2.2.3", "2.2.3.post1"),
        ("2.2.3", "2.2.3+local"),  # a local build of the same release
        ("2.3.0", "2.3.0rc1"),  # a pre-release of the same release
        ("2.3.0.dev4+g1234abc", "2.3.1"),
    ],
)
def test_a_patch_level_or_build_difference_warns(versions, driver, theirs):
    set_version(versions, "client", "pandas", driver)
    for worker in versions["workers"]:
        set_version(versions, worker, "pandas", driver)
    set_version(versions, first_worker(versions), "pandas", theirs)

    (difference,) = find_differences(versions)

    assert not difference.blocking
    assert f"{theirs} on worker" in difference.describe()


@pytest.mark.parametrize(
    ("driver", "theirs", "blocking"),
    [
        ("1.0", "1.0.0", None),  # the same version
        ("2.3.0rc1", "2.2.9", True),  # a pre-release of the next minor
        ("1.7.0", "not-a-version", True),  # cannot tell: blocks
        ("1.7.0", "1.7.0-custom", False),  # read by its leading numbers
        ("1.7.0", "1.8-custom", True),
    ],
)
def test_versions_are_compared_as_release_numbers(versions, driver, theirs, blocking):
    set_version(versions, "client", "kedro", driver)
    for worker in versions["workers"]:
        set_version(versions, worker, "kedro", theirs)

    differences = find_differences(versions)

    assert [d.blocking for d in differences] == ([] if blocking is None else [blocking])


def test_advisory_packages_never_block(versions):
    worker = first_worker(versions)
    set_version(versions, worker, "msgpack", "0.6.2")
    set_version(versions, "scheduler", "tornado", "5.1.0")

    differences = find_differences(versions)

    assert [d.package for d in differences] == ["msgpack", "tornado"]
    assert not any(d.blocking for d in differences)


def test_check_versions_is_one_error_line_naming_every_blocking_package(
    versions, inspector, monkeypatch, caplog
):
    """The real client and scheduler (worker names, address), with the answer of
    ``get_versions`` changed as a mixed cluster would answer."""
    workers = sorted(versions["workers"])
    names = {
        address: str(info["name"])
        for address, info in inspector.scheduler_info(n_workers=-1)["workers"].items()
    }
    driver = versions["client"]["packages"]
    for worker in workers:
        set_version(versions, worker, "distributed", "2020.1.0")
    set_version(versions, workers[0], "pandas", None)
    set_version(versions, workers[1], "numpy", bump(driver["numpy"], 2))  # patch
    asked = []

    def get_versions(check=False, packages=None):
        asked.append((check, packages))
        return versions

    monkeypatch.setattr(inspector, "get_versions", get_versions)
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        pytest.raises(DaskClusterError) as raised,
    ):
        check_versions(inspector)

    message = str(raised.value)
    assert "\n" not in message
    w0 = f"worker {names[workers[0]]!r} ({workers[0]})"
    w1 = f"worker {names[workers[1]]!r} ({workers[1]})"
    assert f"at {inspector.scheduler.address} " in message
    assert (
        f"distributed {driver['distributed']} on the driver, 2020.1.0 on {w0} and {w1}"
        in message
    )
    # Each worker's address is given once, at its first mention.
    assert (
        f"pandas {driver['pandas']} on the driver, missing on worker "
        f"{names[workers[0]]!r}. Install" in message
    )
    assert message.count(workers[0]) == message.count(workers[1]) == 1
    # The patch-level difference is a warning of its own, logged before the error.
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert f"numpy {driver['numpy']} on the driver, " in record.getMessage()
    assert asked == [(False, [p for p in CHECKED if p != "python"])]


def test_one_warning_per_package_and_no_error_for_patch_differences(
    versions, inspector, monkeypatch, caplog
):
    driver = versions["client"]["packages"]
    for worker in versions["workers"]:
        set_version(versions, worker, "dask", bump(driver["dask"], 2))
        set_version(versions, worker, "kedro", bump(driver["kedro"], 2))
    monkeypatch.setattr(inspector, "get_versions", lambda **_: versions)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        check_versions(inspector)

    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert f"dask {driver['dask']} on the driver, " in messages[0]
    assert f"kedro {driver['kedro']} on the driver, " in messages[1]


def test_many_workers_are_counted_beyond_three(versions):
    template = versions["workers"][first_worker(versions)]
    versions["workers"] = {
        f"tcp://127.0.0.1:{port}": copy.deepcopy(template) for port in range(1, 6)
    }
    for worker in versions["workers"]:
        set_version(versions, worker, "kedro", None)

    assert blocking_line(versions).endswith(
        "missing on worker tcp://127.0.0.1:1, worker tcp://127.0.0.1:2, "
        "worker tcp://127.0.0.1:3 and 2 more"
    )


def test_distributeds_own_warning_can_be_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with distributed_version_warning_silenced():
            warnings.warn(VersionMismatchWarning("Mismatched"), stacklevel=1)
            warnings.warn(UserWarning("other"), stacklevel=1)

    assert [type(w.message) for w in caught] == [UserWarning]
