"""Where the Dask cluster of a run comes from.

``DaskCluster`` turns the ``client_args`` a user gives ``DaskRunner`` (usually the
``dask_client`` block of ``conf/<env>/parameters.yml``) into a connected
``distributed.Client``, and closes whatever it opened when the run ends. It knows
nothing about Kedro pipelines: submitting work is the runner's job.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import inspect
import json
import logging
import os
import sys
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import (
    AbstractContextManager,
    ExitStack,
    contextmanager,
    nullcontext,
    suppress,
)
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any, NamedTuple

import dask.config
import tornado.web
from distributed import Client, LocalCluster, Nanny, Security
from kedro.utils import load_obj

from . import forkserver, worker_setup
from .addresses import SchedulerAddress, refuse_plaintext
from .errors import DaskClusterError
from .interrupts import block_sigint, ctrl_c_never_lost
from .local_workers import (
    CLUSTER_OPTION,
    RUN_OPTIONS,
    Source,
    cluster_source,
    current_client,
    worker_environ,
)
from .versions import distributed_version_warning_silenced

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds to wait for a scheduler before giving up (``client_args.timeout``)."""

DEFAULT_WORKER_WAIT = 60
"""Seconds a run waits for its first worker (``client_args.worker_wait``)."""

INTERRUPTED_CLOSE_TIMEOUT = 1.0
"""Seconds the client and the workers of a LocalCluster started by the runner get
to close after Ctrl-C; a worker process still busy with a node is then killed."""

ABANDON_WAIT = 10.0
"""Seconds a LocalCluster started early but never used (``start_early``) may
still take to start before it is closed."""

# Options that describe how to reach a scheduler, or how the client behaves.
_CLIENT_OPTIONS = frozenset(
    {
        "address",
        "scheduler_file",
        "timeout",
        "name",
        "heartbeat_interval",
        "direct_to_workers",
        "connection_limit",
        "security",
    }
)
_CLUSTER_KEYS = frozenset({"class", "kwargs", "adapt"})
# Options that only make sense when the runner starts a LocalCluster: those of
# LocalCluster itself and those it forwards to each worker's Nanny.
_LOCAL_CLUSTER_OPTIONS = (
    (
        frozenset(inspect.signature(LocalCluster).parameters)
        | frozenset(inspect.signature(Nanny).parameters)
    )
    - {"self", "kwargs", "worker_kwargs", "loop", "asynchronous", "start"}
    - (_CLIENT_OPTIONS - {"name"})
)
_LOCALHOST = "127.0.0.1"
# Messages Dask logs whenever a worker is closed while a node runs: expected when
# the run is interrupted, and noise then.
_CLOSING_NOISE = worker_setup.CLOSING_NOISE
_CLOSING_LOGGERS = worker_setup.CLOSING_LOGGERS
# The set-up of each worker process of a LocalCluster the runner starts, a Dask
# preload given by its path: Dask imports the file alone, before anything of Kedro
# or of the project (see the module's docstring). Without a source file (an
# installation of compiled files only), by its module name.
_WORKER_PRELOAD = (
    str(Path(worker_setup.__file__).resolve())
    if str(worker_setup.__file__).endswith(".py")
    else worker_setup.__name__
)

_NUMBER = (int, float)
_DURATION = (int, float, str)  # seconds, or a Dask duration such as "30s"
# The types of the options users set most, checked before anything starts: a
# wrong type would otherwise surface as a long traceback from inside Dask.
_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "address": (str,),
    "scheduler_file": (str,),
    "timeout": _DURATION,
    "worker_wait": _NUMBER,
    "allow_insecure": (bool,),
    "name": (str, int),
    "heartbeat_interval": _DURATION,
    "direct_to_workers": (bool,),
    "connection_limit": (int,),
    "n_workers": (int,),
    "threads_per_worker": (int,),
    "nthreads": (int,),
    "processes": (bool,),
    "memory_limit": (str, int, float),
    "host": (str,),
    "scheduler_port": (int,),
    "dashboard_address": (str,),
    "protocol": (str,),
    "resources": (Mapping,),
    "env": (Mapping,),
    "death_timeout": _DURATION,
}
_TYPE_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    Mapping: "a mapping",
}


def validate_client_args(client_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``client_args`` before anything is started, naming the offending key.

    Raises:
        DaskClusterError: ``client_args`` is not a mapping, has an unknown key, or
            mixes a scheduler ``address`` with options only a LocalCluster takes.
    """
    if client_args is None:
        return {}
    if not isinstance(client_args, Mapping):
        raise DaskClusterError(
            f"dask_client must be a mapping of options, got "
            f"{type(client_args).__name__}: {client_args!r}"
        )
    args = dict(client_args)
    known = _CLIENT_OPTIONS | RUN_OPTIONS | _LOCAL_CLUSTER_OPTIONS | {CLUSTER_OPTION}
    for key in args:
        if key not in known:
            raise DaskClusterError(
                f"Unknown dask_client option '{key}'. Use 'address' to connect to a "
                f"scheduler, 'cluster' to start any cluster class, or LocalCluster "
                f"options such as 'n_workers', 'threads_per_worker', 'processes', "
                f"'memory_limit'."
            )
    for key, value in args.items():
        _check_type(key, value)
    if CLUSTER_OPTION in args:
        _validate_cluster_block(args)
    remote = [key for key in ("address", "scheduler_file") if args.get(key)]
    if remote:
        local_only = sorted(set(args) & (_LOCAL_CLUSTER_OPTIONS - {"name", "security"}))
        if local_only:
            raise DaskClusterError(
                f"dask_client option '{local_only[0]}' configures a LocalCluster "
                f"and cannot be combined with '{remote[0]}'; remove one of them."
            )
    if "security" in args:
        args["security"] = _security(args["security"])
    return args


def _check_type(key: str, value: Any) -> None:
    """Refuse, naming the key, a value of the wrong type (``None``: Dask's default)."""
    expected = _OPTION_TYPES.get(key)
    if expected is None or value is None:
        return
    a_bool_for_a_number = isinstance(value, bool) and bool not in expected
    if isinstance(value, expected) and not a_bool_for_a_number:
        return
    names = list(dict.fromkeys(_TYPE_NAMES[kind] for kind in expected))
    raise DaskClusterError(
        f"dask_client option '{key}' must be {' or '.join(names)}, got "
        f"{type(value).__name__}: {value!r}"
    )


def _validate_cluster_block(args: Mapping[str, Any]) -> None:
    block = args[CLUSTER_OPTION]
    if not isinstance(block, Mapping) or "class" not in block:
        raise DaskClusterError(
            "dask_client option 'cluster' must be a mapping with 'class' (an import "
            "path such as dask_jobqueue.SLURMCluster) and optional 'kwargs', 'adapt'."
        )
    for key in block:
        if key not in _CLUSTER_KEYS:
            raise DaskClusterError(
                f"Unknown key 'cluster.{key}' in dask_client; expected "
                f"{', '.join(sorted(_CLUSTER_KEYS))}."
            )
    for key in ("kwargs", "adapt"):
        if not isinstance(block.get(key) or {}, Mapping):
            raise DaskClusterError(
                f"dask_client option 'cluster.{key}' must be a mapping."
            )
    try:
        load_obj(block["class"])
    except (ImportError, AttributeError, ValueError) as exc:
        raise DaskClusterError(
            f"dask_client option 'cluster.class': cannot import "
            f"'{block['class']}': {exc}"
        ) from None
    others = sorted(set(args) - {CLUSTER_OPTION, "timeout", "security"} - RUN_OPTIONS)
    if others:
        raise DaskClusterError(
            f"dask_client option '{others[0]}' cannot be combined with 'cluster'; "
            f"put cluster options under 'cluster.kwargs'."
        )


def _security(value: Any) -> Security | bool:
    """``security`` as ``distributed.Security``: TLS files and ``require_encryption``.

    ``True`` asks a cluster the runner starts for temporary self-signed
    credentials.
    """
    if isinstance(value, Security | bool):
        return value
    if not isinstance(value, Mapping):
        raise DaskClusterError(
            f"dask_client option 'security' must be a mapping of "
            f"distributed.Security options, got {type(value).__name__}"
        )
    try:
        return Security(**value)
    except TypeError as exc:
        raise DaskClusterError(f"dask_client option 'security': {exc}") from None


def _check_tls(address: SchedulerAddress, security: Security | bool | None) -> None:
    """Refuse, naming the address, a protocol that the TLS settings contradict:
    ``require_encryption`` with a plaintext address, or ``tls://`` without the
    files to talk TLS."""
    settings = security if isinstance(security, Security) else Security()
    if settings.require_encryption and not address.encrypted:
        raise DaskClusterError(
            f"dask_client 'security' requires encryption, but the scheduler "
            f"address {address.address} is not encrypted: use tls://."
        )
    if (
        address.encrypted
        and settings.get_connection_args("client").get("ssl_context") is None
    ):
        raise DaskClusterError(
            f"The scheduler address {address.address} uses {address.protocol}:// "
            f"but dask_client has no 'security' with TLS files (tls_ca_file, "
            f"tls_client_cert, tls_client_key)."
        )


class Connection(NamedTuple):
    """The client of one run, and whether its workers are this runner's own
    LocalCluster processes, which share this machine's files and console."""

    client: Client
    workers_are_local: bool


class _Starting:
    """A LocalCluster started with the runner's defaults (loopback only, private
    TLS, worker processes set up by ``worker_setup``, the dashboard imported when
    first asked for) in a thread of its own, started at once (``background``,
    ``DaskCluster.start_early``) or when first asked for.

    That thread, and the threads Dask starts from it (the cluster's event loop,
    those spawning the worker processes), block SIGINT: the worker processes
    inherit the block from their start, so a Ctrl-C arriving while they import
    Dask does not kill them with a traceback each (``worker_setup`` then ignores
    it for good); the driver's main thread still gets it. multiprocessing's
    resource tracker is started first (``interrupts.block_sigint``): started
    later, from the event loop, it would unblock SIGINT there for every thread
    after it.

    ``cluster()`` waits for it and hands it over; ``abandon()`` closes it, once
    started, when nobody will use it. Exactly one of the two owns it.

    Started in the background, it holds ``ctrl_c_never_lost`` until one of the
    two: Dask's garbage-collector callbacks, which its scheduler and nannies
    register in this process, would otherwise swallow a Ctrl-C pressed while
    Kedro loads the project.
    """

    def __init__(self, options: Mapping[str, Any], background: bool):
        self._options = dict(options)
        self._stack = ExitStack()  # how its worker processes start, while it lives
        self._cluster: LocalCluster | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        self._thread = threading.Thread(
            target=self._start, name="kedro-dask-cluster-start", daemon=True
        )
        self._holds_ctrl_c = background
        if background:
            if self._options.get("processes", True):
                # The imports Dask makes in the thread that starts the first
                # worker process, made here first (see ``import_dask_preloads``).
                forkserver.import_dask_preloads()
            ctrl_c_never_lost.hold()
            self._thread.start()

    def _start(self) -> None:
        try:
            if self._options.get("processes", True):
                block_sigint()  # inherited by the worker processes
            # The worker processes' forkserver first: it imports while the
            # credentials are made (~0.15 s) and the scheduler starts.
            self._stack.enter_context(_worker_processes(self._options))
            options = _local_worker_processes(
                _private_tls(_loopback_only(self._options))
            )
            options, dashboard_prefix = _dashboard_on_request(options)
            self._cluster = LocalCluster(**options)
            if dashboard_prefix is not None:
                _serve_dashboard_on_request(self._cluster, dashboard_prefix)
        except BaseException as exc:  # raised where the cluster is asked for
            self._error = exc
        with self._lock:
            self._done.set()
            abandoned = self._abandoned
        if abandoned:
            self._close_unused()

    @contextmanager
    def cluster(self) -> Iterator[LocalCluster]:
        """The started cluster (waiting for it); restores, at the end, how worker
        processes start. Closing the cluster is the caller's."""
        if self._thread.ident is None:
            self._thread.start()
        try:
            self._done.wait()
        except KeyboardInterrupt:
            self.abandon()
            raise
        try:
            if self._error is not None:
                raise self._error
            assert self._cluster is not None
            yield self._cluster
        finally:
            self._stack.close()
            self._release_ctrl_c()

    def abandon(self) -> None:
        """Close the cluster, once started, nobody having used it."""
        self._release_ctrl_c()
        if self._thread.ident is None:
            return  # never started
        with suppress(KeyboardInterrupt):
            self._done.wait(ABANDON_WAIT)
        with self._lock:
            if self._abandoned:
                return
            self._abandoned = True
            done = self._done.is_set()
        if done:
            self._close_unused()

    def _release_ctrl_c(self) -> None:
        with self._lock:
            holds, self._holds_ctrl_c = self._holds_ctrl_c, False
        if holds:
            ctrl_c_never_lost.release()

    def _close_unused(self) -> None:
        try:
            if self._cluster is not None:
                with suppress(Exception):  # idle workers: a graceful close
                    self._cluster.close()
        finally:
            self._stack.close()


class DaskCluster:
    """Provides the ``distributed.Client`` of one run and owns what it opened.

    Where the cluster comes from, in order:

    1. ``address`` (or ``scheduler_file``) in ``client_args``: connect to that
       scheduler.
    2. ``cluster``: ``{"class": "dask_jobqueue.SLURMCluster", "kwargs": {...},
       "adapt": {"minimum": 1, "maximum": 10}}``: create that cluster (any class
       with Dask's cluster interface), scale it adaptively if asked.
    3. LocalCluster options (``n_workers``, ``threads_per_worker``, ``processes``,
       ``memory_limit``, ...): start a LocalCluster with them.
    4. Nothing: reuse the process's current ``distributed.Client`` (left open), else
       the ``scheduler-address`` of the Dask config (``DASK_SCHEDULER_ADDRESS``),
       else start a LocalCluster.

    A LocalCluster the runner starts listens on 127.0.0.1 only, dashboard included,
    unless ``host``/``dashboard_address`` say otherwise, and its worker processes
    talk TLS with credentials only this run holds (``Security.temporary()``).

    Plaintext (tcp://, ws://) beyond loopback is refused before anything connects,
    whether the address is given, comes from the Dask config or is where a cluster
    started here listens (that cluster is closed), unless ``allow_insecure:
    true``, which logs a warning instead. A current client is used as it is.

    The client and cluster
    opened by ``connect`` are closed when its block ends, whether the run
    succeeded or failed; on Ctrl-C, a LocalCluster's workers are stopped at once,
    without waiting for the nodes they run.
    """

    def __init__(self, client_args: Mapping[str, Any] | None = None):
        self._args = validate_client_args(client_args)
        self._starting: _Starting | None = None
        self._abandon: weakref.finalize | None = None

    @property
    def worker_wait(self) -> float:
        """Seconds to wait for at least one worker before failing the run."""
        return float(self._args.get("worker_wait", DEFAULT_WORKER_WAIT))

    @property
    def allow_insecure(self) -> bool:
        """Whether plaintext to a scheduler beyond loopback is allowed."""
        return self._args.get("allow_insecure") is True

    def start_early(self) -> None:
        """Start now, in a thread of its own, the LocalCluster that ``connect``
        would start, so that it starts while Kedro loads the project; ``connect``
        then waits for it. Nothing happens when the cluster comes from anywhere
        else (an address, a ``cluster`` class, the current client, the Dask
        config), or when it is starting already.

        A cluster started early and never connected to is closed when this
        object is garbage-collected or the process exits.
        """
        if self._starting is not None:
            return
        args = self._connect_args()
        if cluster_source(args) is not Source.LOCAL:
            return
        args.pop("timeout")
        starting = _Starting(args, background=True)
        self._starting = starting
        # Closed if never connected to: when this object goes, or at exit, before
        # Dask's own clean-up of its clusters at exit.
        self._abandon = weakref.finalize(self, starting.abandon)
        self._abandon.atexit = False
        atexit.register(starting.abandon)

    def _connect_args(self) -> dict[str, Any]:
        args = {k: v for k, v in self._args.items() if k not in RUN_OPTIONS}
        args.setdefault("timeout", DEFAULT_CONNECT_TIMEOUT)
        return args

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """Yield a connected client; close what was opened here on exit."""
        starting, self._starting = self._starting, None
        if starting is not None:
            atexit.unregister(starting.abandon)
        if self._abandon is not None:
            self._abandon.detach()
            self._abandon = None
        try:
            context = self._client(self._connect_args(), starting)
        except BaseException:
            if starting is not None:
                starting.abandon()
            raise
        with context as connection:
            yield connection

    def _client(
        self, args: dict[str, Any], starting: _Starting | None = None
    ) -> AbstractContextManager[Connection]:
        """Where the cluster comes from (see the class docstring); ``starting``:
        the LocalCluster ``start_early`` started, if any."""
        source = cluster_source(args)
        if starting is not None and source is not Source.LOCAL:
            starting.abandon()  # e.g. a client made since: that one is used
            starting = None
        if source is Source.CLUSTER:
            return self._any_cluster(**args)
        if source is Source.ADDRESS:
            return self._connect(args)
        if source is Source.LOCAL:
            return self._local_cluster(args, starting)
        if source is Source.CURRENT:
            current = current_client()
            logger.info("Using the current Dask client of this process: %s", current)
            return nullcontext(Connection(current, workers_are_local=False))
        address = dask.config.get("scheduler-address", None)
        return self._connect({**args, "address": address})

    def _check_address(self, address: str, security: Any = None) -> None:
        """Decide, before anything connects to ``address``, whether to: plaintext
        beyond loopback refused unless ``allow_insecure``; TLS settings that
        contradict its protocol refused."""
        parsed = SchedulerAddress.parse(address)
        refuse_plaintext(parsed, allow_insecure=self.allow_insecure)
        _check_tls(parsed, security)

    @contextmanager
    def _connect(self, client_kwargs: dict[str, Any]) -> Iterator[Connection]:
        target = client_kwargs.get("address") or client_kwargs.get("scheduler_file")
        address = client_kwargs.get("address") or _scheduler_file_address(target)
        if address:
            self._check_address(address, client_kwargs.get("security"))
        try:
            with distributed_version_warning_silenced():  # check_versions says it
                client = Client(set_as_default=False, **client_kwargs)
        except (OSError, TimeoutError, RuntimeError, TypeError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DaskClusterError(
                f"Cannot connect to the Dask scheduler at {target} "
                f"(timeout {client_kwargs['timeout']} s): {reason}"
            ) from None
        quiet = _LostSchedulerNoise()
        try:
            if not address:  # a scheduler file that appeared while waiting
                self._check_address(client.scheduler.address)
            logger.info(
                "Connected to the Dask scheduler at %s; dashboard: %s",
                client.scheduler.address,
                client.dashboard_link,
            )
            for name in _LostSchedulerNoise.LOGGERS:
                logging.getLogger(name).addFilter(quiet)
            yield Connection(client, workers_are_local=False)
        finally:
            try:
                client.close()
            finally:
                for name in _LostSchedulerNoise.LOGGERS:
                    logging.getLogger(name).removeFilter(quiet)

    @contextmanager
    def _any_cluster(
        self, cluster: Mapping[str, Any], **client_kwargs: Any
    ) -> Iterator[Connection]:
        cluster_class = load_obj(cluster["class"])
        kwargs = dict(cluster.get("kwargs") or {})
        if "security" in client_kwargs:
            kwargs.setdefault("security", client_kwargs.pop("security"))
        with ExitStack() as stack:
            if isinstance(cluster_class, type) and issubclass(
                cluster_class, LocalCluster
            ):
                stack.enter_context(_worker_processes(kwargs))
                kwargs = _local_worker_processes(_private_tls(_loopback_only(kwargs)))
            with self._own(
                cluster_class(**kwargs), cluster.get("adapt"), client_kwargs
            ) as c:
                yield c

    @contextmanager
    def _local_cluster(
        self, options: dict[str, Any], starting: _Starting | None
    ) -> Iterator[Connection]:
        client_kwargs = {"timeout": options.pop("timeout")}
        if starting is None:
            starting = _Starting(options, background=False)
        with (
            starting.cluster() as cluster,
            self._own(cluster, None, client_kwargs) as client,
        ):
            yield client

    @contextmanager
    def _own(
        self, cluster: Any, adapt: Mapping[str, Any] | None, client_kwargs: dict
    ) -> Iterator[Connection]:
        """Connect to a cluster started here; close client and cluster at the end.

        The client takes the cluster's own ``security``; a scheduler listening in
        plaintext beyond loopback is refused (and closed) before anything
        connects to it, unless ``allow_insecure``."""
        try:
            refuse_plaintext(
                SchedulerAddress.parse(cluster.scheduler_address),
                allow_insecure=self.allow_insecure,
                role=f"to the {type(cluster).__name__} started",
            )
            if adapt:
                cluster.adapt(**adapt)
            client = Client(cluster, set_as_default=False, **client_kwargs)
            try:
                logger.info(
                    "Started a Dask %s at %s; dashboard: %s",
                    type(cluster).__name__,
                    cluster.scheduler_address,
                    client.dashboard_link,
                )
                yield Connection(client, isinstance(cluster, LocalCluster))
            except KeyboardInterrupt:
                _close_interrupted(client, cluster)
                raise
            # After a run, the workers close gracefully: stopping them at once
            # saved ~0.25 s, but then LocalCluster.close never returned with
            # distributed 2026.1 (retiring workers already gone).
            finally:
                client.close()
        finally:
            cluster.close()


class _LostSchedulerNoise(logging.Filter):
    """Drops what the client logs as it gives up on a scheduler lost during a
    run: the run ends with one line naming it (``dask_runner._failure``), not
    with "Failed to reconnect" and the traceback of its own close, cancelled
    while it reconnects."""

    LOGGERS = ("distributed.client", "distributed.utils")

    def filter(self, record: logging.LogRecord) -> bool:
        cancelled = record.exc_info is not None and isinstance(
            record.exc_info[1], asyncio.CancelledError
        )
        return not cancelled and not str(record.msg).startswith(
            "Failed to reconnect to scheduler"
        )


def _scheduler_file_address(path: str) -> str | None:
    """The address a scheduler file holds, if it is there yet."""
    try:
        return json.loads(Path(path).read_text())["address"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # Dask waits for it: checked once connected


def _private_tls(options: dict[str, Any]) -> dict[str, Any]:
    """LocalCluster options whose worker processes talk TLS with credentials
    made for this run, held in its memory only (``Security.temporary()``): on a
    shared machine every user reaches 127.0.0.1, and none but this run can then
    submit work to its scheduler. Left as asked with ``security`` or another
    ``protocol`` given; thread-only clusters talk in-process (inproc://)."""
    protocol = str(options.get("protocol") or "tls").split("://")[0]
    if "security" in options or protocol != "tls":
        return options
    if not options.get("processes", True) and not options.get("protocol"):
        return options
    return {**options, "security": Security.temporary()}


def _loopback_only(options: dict[str, Any]) -> dict[str, Any]:
    """LocalCluster options defaulting every listener to 127.0.0.1."""
    options = dict(options)
    if options.get("processes", True) or options.get("protocol"):
        # A thread-only cluster talks in-process (inproc://) and has no host.
        options.setdefault("host", _LOCALHOST)
    options.setdefault("dashboard_address", f"{_LOCALHOST}:8787")
    return options


def _local_worker_processes(options: dict[str, Any]) -> dict[str, Any]:
    """LocalCluster options whose worker processes are set up by ``worker_setup``:
    Ctrl-C left to the driver, nothing printed that the driver shows."""
    if not options.get("processes", True):
        return options  # thread-only: the workers live in the driver
    preload = options.get("preload") or []
    preload = [preload] if isinstance(preload, str) else list(preload)
    return {**options, "preload": [*preload, _WORKER_PRELOAD]}


def _dashboard_on_request(options: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """LocalCluster options whose scheduler serves its dashboard's address from
    the start but imports the dashboard itself (bokeh, about 0.5 s of the start)
    only when first asked for (``_serve_dashboard_on_request``); and the
    dashboard's HTTP prefix, or ``None`` to leave the dashboard to Dask (none
    asked for, ``scheduler_kwargs.dashboard`` given, or no bokeh)."""
    if options.get("dashboard_address") is None:
        return options, None
    scheduler_kwargs = dict(options.get("scheduler_kwargs") or {})
    if "dashboard" in scheduler_kwargs or importlib.util.find_spec("bokeh") is None:
        return options, None
    scheduler_kwargs["dashboard"] = False
    prefix = scheduler_kwargs.get("http_prefix", "/")
    return {**options, "scheduler_kwargs": scheduler_kwargs}, prefix


class _DashboardOnRequest(tornado.web.Application):
    """Installs Dask's scheduler dashboard on the scheduler's HTTP server when a
    request first reaches it; then routes nothing itself: the dashboard, installed
    after it, serves the request."""

    def __init__(self, scheduler: Any, prefix: str):
        super().__init__()
        self._scheduler = scheduler
        self._prefix = prefix
        self._installed = False

    def find_handler(self, request: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if not self._installed:
            self._installed = True
            _install_dashboard(self._scheduler, self._prefix)


def _install_dashboard(scheduler: Any, prefix: str) -> None:
    """What Dask's scheduler does at its start when it has a dashboard."""
    try:
        import distributed.dashboard.scheduler as dashboard
    except ImportError:  # a bokeh Dask cannot use: Dask's note that it is missing
        from distributed.http.utils import get_handlers

        missing = ["distributed.http.scheduler.missing_bokeh"]
        scheduler.http_application.add_handlers(
            r".*", get_handlers(server=scheduler, modules=missing, prefix=prefix)
        )
        return
    dashboard.connect(
        scheduler.http_application, scheduler.http_server, scheduler, prefix=prefix
    )


async def _install_dashboard_now(scheduler: Any, prefix: str) -> None:
    _install_dashboard(scheduler, prefix)


def _serve_dashboard_on_request(cluster: LocalCluster, prefix: str) -> None:
    """The dashboard of ``cluster``, started without one, installed when first
    asked for; at once if this Dask's scheduler is not as expected."""
    scheduler = cluster.scheduler
    try:
        scheduler.http_application.add_application(
            _DashboardOnRequest(scheduler, prefix)
        )
    except AttributeError:
        cluster.sync(_install_dashboard_now, scheduler, prefix)


@contextmanager
def _worker_processes(options: Mapping[str, Any]) -> Iterator[None]:
    """Around the life of a LocalCluster: how its worker processes start.

    - Dask's ``distributed.nanny.pre-spawn-environ`` gives them
      ``worker_environ()``; Dask sets it in this process too, so it is taken
      out again at the end.
    - They do not run the main script again (see ``_no_main_rerun``).
    - The process's first LocalCluster forks them from a forkserver that has
      imported what they need (see ``forkserver``).
    """
    if not options.get("processes", True):
        yield  # thread-only: no worker process
        return
    key = forkserver.PRE_SPAWN_KEY
    ours = worker_environ()
    environ = {**(dask.config.get(key, default=None) or {}), **ours}
    added = [name for name in ours if name not in os.environ]
    config: dict[str, Any] = {key: environ}
    if forkserver.take(ours):
        config[forkserver.START_METHOD_KEY] = "forkserver"
    try:
        with dask.config.set(config), _no_main_rerun():
            yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextmanager
def _no_main_rerun() -> Iterator[None]:
    """Spawn worker processes without running the main script in each.

    A process started by multiprocessing's ``spawn`` (Dask's
    ``distributed.worker.multiprocessing-method``) first runs the parent's main
    script again, as ``__mp_main__``, so that what it defines can be unpickled;
    not when it ran as a module (``python -m kedro``). The ``kedro`` command
    (and the project's own) is a launcher script defining nothing: running it
    again imports Kedro's whole CLI and applies Kedro's logging in every worker,
    before Dask's. Such a script is marked as a module while the cluster lives,
    which spawn does not run again. A script defining functions or classes is
    run again, as Dask would.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        yield  # a module (python -m ...): not run again anyway
        return
    if any(_defined_in_main(value) for value in vars(main).values()):
        yield
        return
    main.__spec__ = ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = None


def _defined_in_main(value: Any) -> bool:
    """Whether ``value`` is a function or class of the main script."""
    return (
        isinstance(value, type) or inspect.isfunction(value)
    ) and value.__module__ == "__main__"


def _close_interrupted(client: Client, cluster: Any) -> None:
    """Close, after Ctrl-C, the client and a LocalCluster's workers within about
    ``INTERRUPTED_CLOSE_TIMEOUT`` s, without waiting for the nodes they run.

    The client goes first, so that nothing reports the workers' departure to it.
    Left to ``LocalCluster.close``, each nanny would wait 4 s for its worker to
    finish the node it runs (Dask cannot interrupt a running thread) before
    killing it; here it waits less than ``INTERRUPTED_CLOSE_TIMEOUT``.
    """
    if isinstance(cluster, LocalCluster):
        logger.info(
            "Interrupted: stopping the %d Dask workers of the run",
            len(cluster.workers),
        )
    _stop_local_workers(client, cluster, INTERRUPTED_CLOSE_TIMEOUT)


def _stop_local_workers(client: Client | None, cluster: Any, timeout: float) -> None:
    """Close ``client``, then stop a LocalCluster's workers within about
    ``timeout`` s, killing a worker process still there, quietly: what Dask
    logs as it kills them is dropped."""
    if client is not None:
        with suppress(Exception):
            client.close(timeout=max(timeout, INTERRUPTED_CLOSE_TIMEOUT))
    if not isinstance(cluster, LocalCluster):
        return  # e.g. batch jobs: their own close cancels them
    workers = list(cluster.workers.values())
    quiet = worker_setup.DropMessages(_CLOSING_NOISE)
    loggers = [logging.getLogger(name) for name in _CLOSING_LOGGERS]
    for closing_logger in loggers:
        closing_logger.addFilter(quiet)
    try:
        with suppress(Exception):
            cluster.sync(
                _stop_workers,
                workers,
                timeout,
                callback_timeout=3 * max(timeout, INTERRUPTED_CLOSE_TIMEOUT),
            )
    finally:
        for closing_logger in loggers:
            closing_logger.removeFilter(quiet)


async def _stop_workers(workers: list[Any], timeout: float) -> None:
    reason = "kedro-run-interrupted"
    await asyncio.gather(
        *(
            worker.close(timeout=timeout, reason=reason)
            if isinstance(worker, Nanny)
            else worker.close(timeout=timeout, executor_wait=False, reason=reason)
            for worker in workers
        ),
        return_exceptions=True,
    )
