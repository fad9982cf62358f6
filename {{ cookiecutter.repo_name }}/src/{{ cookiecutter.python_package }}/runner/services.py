"""What a run sets up around its graph: shipped code, worker logs, progress, report.

``RunOptions`` holds the ``dask_runner`` parameters of the run environment (next to
``dask_client`` in ``conf/<env>/parameters.yml``); ``run_services`` installs on the
cluster what they ask for and removes it when the run ends; ``NodeProgress`` shows
how far the run is.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DaskRunnerError
from .plugins import ShipCode, by_value
from .worker import warm_up

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

NODE_OPTION_KEYS = frozenset(
    {"resources", "retries", "priority", "workers", "allow_other_workers"}
)
"""Dask options a ``node_options`` rule may set for the nodes it selects."""
_SELECTORS = frozenset({"tags", "nodes"})


@dataclass(frozen=True)
class RunOptions:
    """How a run behaves on the cluster, beyond where the cluster comes from.

    Attributes:
        progress: Show a live progress display (nodes done / running / failed of
            N). ``None``: when the console is a terminal.
        forward_logs: Show in the driver's console what nodes log on the workers
            (``node_logs``), node by node, as ``SequentialRunner`` shows it.
            ``False``: the workers' own logging handles it. ``None``: on.
        ship_code: Send the project package to the workers at the start of the run.
            ``None``: unless the workers are the runner's own local processes.
        performance_report: Write Dask's HTML performance report of the run here.
        run_record: Write the run's record here (JSON: each node's worker, start,
            end, duration, status, bytes of in-memory inputs moved between
            workers) and its timeline next to it (the same name, ``.html``).
        node_options: Rules giving Dask ``resources``, ``retries``, ``priority``,
            ``workers`` or ``allow_other_workers`` to the nodes they select by
            ``tags`` (any of) or ``nodes`` (names); later rules win.
        fuse_chains: Run each linear chain of nodes as one Dask task (see
            ``PipelineGraph.chains``), saving a scheduler round trip per node.
            ``False`` shows every node as its own task on the dashboard.
    """

    progress: bool | None = None
    forward_logs: bool | None = None
    ship_code: bool | None = None
    performance_report: str | None = None
    run_record: str | None = None
    node_options: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    fuse_chains: bool = True

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> RunOptions:
        """Validate ``dask_runner`` parameters, naming any key that is wrong."""
        options = dict(options or {})
        cls.check_names(options, "DaskRunner option")
        rules = options.get("node_options") or ()
        if isinstance(rules, Mapping) or not isinstance(rules, Sequence):
            raise DaskRunnerError(
                "dask_runner option 'node_options' must be a list of rules, each "
                "with 'tags' or 'nodes' and Dask options such as 'resources'."
            )
        for index, rule in enumerate(rules):
            _check_rule(index, rule)
        options["node_options"] = tuple(dict(rule) for rule in rules)
        return cls(**options)

    @classmethod
    def check_names(cls, options: Mapping[str, Any], what: str) -> None:
        """Name the first key of ``options`` that is no option.

        Raises:
            DaskRunnerError: ``Unknown <what> '<key>'``, with the known ones.
        """
        known = {f.name for f in fields(cls)}
        for key in options:
            if key not in known:
                raise DaskRunnerError(
                    f"Unknown {what} '{key}'; expected one of "
                    f"{', '.join(sorted(known))}."
                )

    def annotations(self, node: Any) -> dict[str, Any]:
        """The Dask options of ``node``, merged from the rules that select it."""
        merged: dict[str, Any] = {}
        for rule in self.node_options:
            if node.name in rule.get("nodes", ()) or set(node.tags) & set(
                rule.get("tags", ())
            ):
                merged.update({k: v for k, v in rule.items() if k not in _SELECTORS})
        return merged


def _check_rule(index: int, rule: Any) -> None:
    where = f"dask_runner.node_options[{index}]"
    if not isinstance(rule, Mapping):
        raise DaskRunnerError(f"{where} must be a mapping.")
    if not rule.keys() & _SELECTORS:
        raise DaskRunnerError(f"{where} selects no node: give 'tags' or 'nodes'.")
    for key, value in rule.items():
        if key not in _SELECTORS | NODE_OPTION_KEYS:
            raise DaskRunnerError(
                f"Unknown key '{key}' in {where}; expected tags, nodes, "
                f"{', '.join(sorted(NODE_OPTION_KEYS))}."
            )
        if key in _SELECTORS and (
            isinstance(value, str) or not isinstance(value, Sequence)
        ):
            raise DaskRunnerError(f"{where}.{key} must be a list of names.")


@contextmanager
def run_services(
    client: Client,
    options: RunOptions,
    workers_are_local: bool,
    package_name: str | None,
    token: str,
) -> Iterator[None]:
    """Install what ``options`` ask for on the cluster for one run."""
    remote = not workers_are_local
    with ExitStack() as stack:
        if package_name and (
            remote if options.ship_code is None else options.ship_code
        ):
            stack.enter_context(_ship_code(client, package_name, token))
        if workers_are_local:
            stack.enter_context(_warm_up(client, package_name, token))
        if options.performance_report:
            stack.enter_context(_performance_report(client, options.performance_report))
        yield


@contextmanager
def _ship_code(client: Client, package_name: str, token: str) -> Iterator[None]:
    package = importlib.import_module(package_name)
    package_dir = Path(package.__file__).parent
    plugin = ShipCode(package_dir)
    name = f"kedro-code-{package_name}-{token}"
    with by_value():
        client.register_plugin(plugin, name=name)
    logger.info(
        "Shipped package '%s' (%d kB) to the Dask workers",
        package_name,
        len(plugin.archive) // 1024,
    )
    try:
        yield
    finally:
        # Also when the run failed; the scheduler may be gone by then.
        with suppress(Exception):
            client.unregister_worker_plugin(name)


@contextmanager
def _warm_up(client: Client, package_name: str | None, token: str) -> Iterator[None]:
    """Have every worker of a LocalCluster the runner started import what node
    tasks need (``worker.warm_up``) as the run starts, ahead of its first node.

    A worker's first node task imports Kedro's runner and configures the project
    (about 0.4 s on 2 cores) before the node runs. Without this, the second
    worker does so only when it gets its first node, while the first worker's
    nodes run: the example pipeline's second model trained 0.8 s after the
    first. Each worker runs its warm-up first (submitted before any node), the
    others' while the first node runs. The warm-ups are not part of the run: not
    followed, and released when it ends.
    """
    futures = [
        client.submit(
            warm_up,
            package_name,
            key=f"kedro-warm-up-{token}-{address}",
            workers=[address],
            allow_other_workers=False,
            pure=False,
        )
        for address in client.scheduler_info(n_workers=-1)["workers"]
    ]
    try:
        yield
    finally:
        del futures


@contextmanager
def _performance_report(client: Client, path: str) -> Iterator[None]:
    from distributed import performance_report

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with client.as_current(), performance_report(filename=path):
        yield
    logger.info("Wrote the Dask performance report of the run to %s", path)


class NodeProgress:
    """Nodes done / running / failed of N, as a rich progress bar on a terminal.

    Off a terminal it shows nothing: the runner logs every completed node anyway.
    """

    def __init__(self, total: int, enabled: bool | None):
        from rich import get_console

        console = get_console()
        self.enabled = console.is_terminal if enabled is None else enabled
        self._total = total
        self._done = self._running = self._failed = 0
        self._progress: Any = None
        self._task: Any = None
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]Kedro on Dask"),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task(self._describe(), total=total)

    def __enter__(self) -> NodeProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._running = 0  # finished, failed or cancelled: nothing runs any more
            self._refresh()
            self._progress.stop()

    def node_done(self) -> None:
        self._done += 1
        self._refresh()

    def node_failed(self) -> None:
        self._failed += 1
        self._refresh()

    def running(self, count: int) -> None:
        self._running = count
        self._refresh()

    def _describe(self) -> str:
        # The running count is polled, so it can lag behind nodes just finished.
        running = min(self._running, self._total - self._done - self._failed)
        return (
            f"{self._done} done, {running} running, {self._failed} failed "
            f"of {self._total} nodes"
        )

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, completed=self._done, description=self._describe()
            )
