"""Metrics and liveness of a Celery worker, served by its main process on WORKER_METRICS_PORT.

Tasks run in prefork children, so a worker uses prometheus_client's multiprocess mode: every
process of the worker writes its metric values to files in PROMETHEUS_MULTIPROC_DIR, and the main
process serves their sum at `/metrics`. The directory is the worker's own: the one the environment
names (emptied at start, so counters start from zero with the worker) or else a fresh temporary
one (removed at shutdown). The mode has to be chosen before any metric exists, so
`kafka_platform.celery` calls `prepare()` while the `celery worker` command imports the app.

`/healthz` beats with the worker's event loop: a timer on the loop beats every few seconds, and a
loop that stops (lost broker connection, blocked main process) turns the probe to 503 after
HEALTH_MAX_SILENCE_S. `celery -A kafka_platform inspect ping -d celery@$HOSTNAME` is the
broker-side equivalent (see docs/operations.md). The same heartbeat is published to Redis for the
web `/health` (`core.probes.HeartbeatPublisher`, from a thread of the main process).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps, signals
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from core.probes import Heartbeat, HeartbeatPublisher, ProbeServer

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HEARTBEAT_INTERVAL_S = 2.0


class _State:
    directory: Path | None = None
    owns_directory = False
    heartbeat: Heartbeat | None = None
    server: ProbeServer | None = None
    publisher: HeartbeatPublisher | None = None


_state = _State()


def started_as_worker() -> bool:
    """True while the `celery worker` command is loading the app (its click context says so)."""
    try:
        import click
    except ImportError:  # pragma: no cover - celery depends on click
        return False
    context = click.get_current_context(silent=True)
    return context is not None and context.invoked_subcommand == "worker"


def prepare() -> Path:
    """Switch this process (and the children it forks) to multiprocess metrics in a clean directory."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="kafka-platform-worker-metrics-"))
        _state.owns_directory = True
    os.environ[MULTIPROC_ENV] = str(directory)
    _state.directory = directory
    if "prometheus_client" in sys.modules:
        # Metrics created from now on write to files; the value class was chosen at import.
        from prometheus_client import values

        values.ValueClass = values.MultiProcessValue()
    return directory


class _EveryDeclaredMetric(Collector):
    """The sum over the worker's processes, plus HELP/TYPE of every platform metric not yet sampled.

    Multiprocess mode only knows metrics a process has written; a labelled counter no task has
    touched yet would be missing from the scrape, so its declaration is served instead.
    """

    def __init__(self, directory: Path) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self._sampled = MultiProcessCollector(None, path=str(directory))

    def collect(self) -> Iterator[Metric]:
        from core import metrics

        seen = set()
        for family in self._sampled.collect():
            seen.add(family.name)
            yield family
        for metric in metrics.PROCESS_METRICS:
            for family in metric.describe():
                if family.name not in seen:
                    yield family


def _registry(directory: Path) -> CollectorRegistry:
    from core import metrics

    registry = CollectorRegistry()
    registry.register(_EveryDeclaredMetric(directory))
    registry.register(metrics.OUTBOX_PENDING)
    return registry


class HeartbeatStep(bootsteps.StartStopStep):
    """Beats the probe's heartbeat from a timer that only fires while the event loop runs."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        if _state.heartbeat is not None:
            _state.heartbeat.beat()
            self.tref = worker.timer.call_repeatedly(HEARTBEAT_INTERVAL_S, _state.heartbeat.beat, priority=10)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


def _start_probe(sender: Any = None, **kwargs: Any) -> None:
    """worker_init, in the main process before the pool forks."""
    from django.conf import settings

    if _state.directory is None:
        return
    _state.heartbeat = Heartbeat(max_silence_s=settings.HEALTH_MAX_SILENCE_S)
    # redis-py resets its connections in a forked pool child, so this thread's client is safe.
    _state.publisher = HeartbeatPublisher(
        kind="worker",
        name=getattr(sender, "hostname", None) or f"pid-{os.getpid()}",
        heartbeat=_state.heartbeat,
        redis_url=settings.CELERY_BROKER_URL,
        ttl_s=max(5 * settings.HEALTH_MAX_SILENCE_S, 60.0),
        details=lambda: {"pid": os.getpid()},
    )
    _state.publisher.start()
    if not settings.WORKER_METRICS_PORT:
        return
    try:
        _state.server = ProbeServer(
            port=settings.WORKER_METRICS_PORT,
            registry=_registry(_state.directory),
            checks={"event_loop": _state.heartbeat.check},
        ).start()
    except OSError as exc:
        logger.warning("worker metrics port %s unavailable: %s", settings.WORKER_METRICS_PORT, exc)
        return
    logger.info(
        "worker metrics and health on :%s (/metrics, /healthz); %s=%s",
        _state.server.port,
        MULTIPROC_ENV,
        _state.directory,
    )


def _close_probe_in_child(**kwargs: Any) -> None:
    """worker_process_init: a pool child inherits the listening socket; only the parent serves."""
    if _state.server is not None:
        _state.server.close_inherited_socket()


def _mark_child_dead(pid: int | None = None, **kwargs: Any) -> None:
    """worker_process_shutdown: drop the exiting child's live gauges (its counters stay summed)."""
    from prometheus_client import multiprocess

    if _state.directory is not None:
        multiprocess.mark_process_dead(pid or os.getpid(), path=str(_state.directory))


def _stop_probe(**kwargs: Any) -> None:
    """worker_shutdown, in the main process."""
    if _state.publisher is not None:
        _state.publisher.stop()
        _state.publisher = None
    if _state.server is not None:
        _state.server.stop()
        _state.server = None
    if _state.owns_directory and _state.directory is not None:
        shutil.rmtree(_state.directory, ignore_errors=True)


def install(app: Celery) -> None:
    """In a `celery worker` process: multiprocess metrics now, the probe once the worker starts."""
    if not started_as_worker():
        return
    prepare()
    app.steps["worker"].add(HeartbeatStep)
    signals.worker_init.connect(_start_probe, weak=False, dispatch_uid="worker_probe.start")
    signals.worker_process_init.connect(_close_probe_in_child, weak=False, dispatch_uid="worker_probe.child")
    signals.worker_process_shutdown.connect(_mark_child_dead, weak=False, dispatch_uid="worker_probe.dead")
    signals.worker_shutdown.connect(_stop_probe, weak=False, dispatch_uid="worker_probe.stop")
