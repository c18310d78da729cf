"""Fixtures of the real stack: an embedded Kafka broker, the test database, Redis, and the bridge,
outbox relay and Celery worker as subprocesses. Session-scoped; a test that stops one restarts it.

Parallel test sessions on one machine: give each its own DATABASE_URL (the test database is
`test_<name>`) and TEST_REDIS_URL; the broker and consumer group are per session already.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from django.conf import settings

from bridge.clients import close_shared_producer
from bridge.embedded import EmbeddedBroker, free_port
from tests.support.clean_slate import remember, wipe
from tests.support.drained import wait_until_drained
from tests.support.kafka import Collector
from tests.support.locks import outsider_session
from tests.support.processes import Proc, celery, child_env, manage

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


WORKER_QUEUES = "payments,ledger,notifications,audit,default"
# An event whose data.metadata.killWorker is this makes its task kill its own worker process
# (bridge.poison.kill_switch_pulled): the test of tasks whose worker dies under them.
KILL_WORKER_MARKER = f"kill-{uuid.uuid4().hex[:8]}"
BEAT_MAX_INTERVAL_S = os.environ.get("TEST_BEAT_MAX_INTERVAL_S", "1")


class Stack:
    """The running platform under test and the addresses of its parts."""

    def __init__(self, bootstrap: str, env: dict[str, str], log_dir: Path) -> None:
        self.bootstrap = bootstrap
        self.env = env
        self.log_dir = log_dir
        self.bridge = Proc("bridge", manage("run_bridge", "--no-relay"), env, log_dir)
        self.relay = Proc("relay", manage("relay_outbox"), env, log_dir)
        self.worker = Proc(
            "worker",
            celery(
                "worker",
                "-Q",
                WORKER_QUEUES,
                "-c",
                "2",
                "-l",
                "info",
                "--without-mingle",
                "--without-gossip",
                "-n",
                f"test-{uuid.uuid4().hex[:6]}@%h",
            ),
            env,
            log_dir,
        )
        # Beat runs the PeriodicTask rows (outbox sweep, notification dispatcher); a short loop
        # interval lets it notice rows changed by a test within a second.
        self.beat = Proc(
            "beat", celery("beat", "-l", "info", "--max-interval", BEAT_MAX_INTERVAL_S), env, log_dir
        )

    @property
    def procs(self) -> tuple[Proc, ...]:
        return (self.bridge, self.relay, self.worker, self.beat)

    def probe_url(self, process: str, path: str = "/metrics") -> str:
        """`/metrics` or `/healthz` of "bridge" or "worker" (their ports are in the env)."""
        return f"http://127.0.0.1:{self.env[process.upper() + '_METRICS_PORT']}{path}"

    def start(self) -> None:
        self.worker.start()
        self.relay.start()
        self.bridge.start()
        self.beat.start()
        self.worker.wait_for_log("ready.")
        self.bridge.wait_for_log("bridge assigned")

    def reconfigure(self, overrides: dict[str, str]) -> None:
        """Restart every process with `overrides` in its environment ({} restores the original)."""
        self.stop()
        env = {**self.env, **overrides} if overrides else self.env
        for proc in self.procs:
            proc.env = env
        self.start()

    def ensure_running(self) -> None:
        for proc in (self.worker, self.relay, self.bridge, self.beat):
            if not proc.running:
                proc.start()

    def stop(self) -> None:
        """SIGTERM every process, then wait for each: they shut down side by side."""
        for proc in self.procs:
            proc.signal()
        for proc in self.procs:
            proc.wait_stopped()

    def kill(self) -> None:
        """SIGKILL every process and its children: the end of a session, where a warm shutdown
        (the worker's takes 2-3 s) would prove nothing; the next session starts from a flushed
        Redis and a wiped database."""
        for proc in self.procs:
            proc.kill()

    def processes_alive(self) -> bool:
        return all(proc.running for proc in self.procs)

    def wait_until_drained(
        self, since: datetime, collector: Collector | None = None, timeout_s: float = 120.0
    ) -> float:
        """Wait until every copy of every event given to the stack has been consumed
        (tests.support.drained); `since`: when the test began writing. Answers the seconds waited."""
        env = self.worker.env
        return wait_until_drained(
            bootstrap=self.bootstrap,
            group=env["KAFKA_CONSUMER_GROUP"],
            redis_url=env["CELERY_BROKER_URL"],
            queues=WORKER_QUEUES.split(","),
            since=since,
            collector=collector,
            timeout_s=timeout_s,
        )

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in self.procs)


@pytest.fixture(scope="session")
def django_db_setup(
    django_test_environment: None, django_db_blocker: Any, request: pytest.FixtureRequest
) -> Iterator[None]:
    """Always set up the test database: pytest-django does it only for tests marked django_db,
    and the flow tests use `shared_db` instead of that mark. With `--reuse-db` (make test-fast)
    an existing test database is kept and only migrated forward, and left for the next run."""
    from django.test.utils import setup_databases, teardown_databases

    keep = bool(request.config.getoption("reuse_db")) and not request.config.getoption("create_db")
    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, keepdb=keep, aliases={"default"})
        # The state every test starts from, and the copy each transactional test's wipe puts back
        # (tests.support.clean_slate); with --reuse-db it also clears what the last run's processes
        # wrote after its last wipe (a dead letter, an outbox row), which would count in this run.
        remember()
    yield
    if keep:
        return
    with django_db_blocker.unblock():
        from django.db import connection

        with connection.cursor() as cursor:  # connections left open by test threads
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        teardown_databases(config, verbosity=0)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def stack(
    kafka_broker: EmbeddedBroker,
    django_db_setup: None,
    django_db_blocker: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    from django.core.management import call_command
    from django.db import connection

    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_broker.bootstrap
    settings.CELERY_BROKER_URL = TEST_REDIS_URL
    db = connection.settings_dict
    env = child_env(
        {
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CELERY_BROKER_URL": TEST_REDIS_URL,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
            "KAFKA_CONSUMER_GROUP": f"test-bridge-{uuid.uuid4().hex[:8]}",
            "BRIDGE_METRICS_PORT": str(free_port()),
            "WORKER_METRICS_PORT": str(free_port()),
            "PAYMENTS_GATEWAY_RETRY_BACKOFF": "0.1",
            "PAYMENTS_GATEWAY_RETRY_BACKOFF_MAX": "0.5",
            "DATABASE_CONN_MAX_AGE": "0",
            # Fraud rules with thresholds the payments tests can reach; the gateway's breaker is
            # tested on its own (tests/payments/test_circuit_breaker.py), so keep it out of the way.
            "PAYMENTS_FRAUD_VELOCITY_MAX": "3",
            "PAYMENTS_FRAUD_BLOCKED_COUNTRIES": "KP",
            "PAYMENTS_FRAUD_BLOCKED_BINS": "666666",
            "PAYMENTS_FRAUD_AMOUNT_THRESHOLD": "50000",
            "PAYMENTS_GATEWAY_BREAKER_THRESHOLD": "1000",
            # Beat's scheduled reconciliation of payments against the ledger would judge what other
            # tests leave on purpose (postings forged without a payment); its own tests run it
            # with an injected clock (tests/payments/test_ledger_reconciliation.py).
            "PAYMENTS_RECONCILIATION_GRACE_S": "86400",
            "TASK_TEST_KILL_MARKER": KILL_WORKER_MARKER,
        }
    )
    with django_db_blocker.unblock():
        call_command("kafka_topics", "--create", stdout=open(os.devnull, "w"))  # noqa: SIM115
    running = Stack(kafka_broker.bootstrap, env, tmp_path_factory.mktemp("stack-logs"))
    running.start()
    yield running
    running.kill()
    close_shared_producer()


@pytest.fixture
def shared_db(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Database access with autocommit and no clean-up, as the stack's processes see it.

    Flow tests share one test database with running workers; pytest-django's per-test TRUNCATE
    would deadlock against their transactions, so tests use unique ids instead of a clean slate.
    """
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def live(stack: Stack, shared_db: None, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The running stack for one flow test; its processes' logs are printed if the test fails."""
    stack.ensure_running()
    yield stack
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(stack.logs())


@pytest.fixture
def collector(stack: Stack) -> Iterator[Collector]:
    from bridge.topics import CATALOG

    c = Collector(stack.bootstrap, [t.name for t in CATALOG])
    yield c
    c.close()


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing() -> Iterator[None]:
    """Passwords set in this process are hashed with one MD5 round instead of PBKDF2's million
    (about 0.3 s a hash here): the lockout tests alone try some 60 passwords. The production
    hashers stay listed after it, so a hash written by a subprocess still verifies; no subprocess
    checks a password this process set."""
    from django.test import override_settings

    with override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]
    ):
        yield


@pytest.fixture(scope="session", autouse=True)
def wipe_after_transactional_tests() -> Iterator[None]:
    """End a transactional test with `tests.support.clean_slate.wipe` instead of Django's flush
    (the same state, at a fraction of the cost), retried when PostgreSQL aborts it as a deadlock
    victim.

    The wipe TRUNCATEs the tables the test wrote while the stack may still be working on the
    test's events (say the ledger posting a payment the test no longer waits for); a task's
    transaction and the TRUNCATE can then lock two tables in opposite orders, and PostgreSQL
    aborts one of them. When that is the wipe, it simply runs again.
    """
    from django.db import OperationalError
    from django.test import TransactionTestCase

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                wipe()
            except OperationalError as exc:
                if "deadlock detected" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
            else:
                return

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_teardown", teardown)
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


# Fixtures that start processes besides pytest: the stack (broker, bridge, relay, worker, beat),
# a broker alone, or a redis-server of the test's own.
PROCESS_FIXTURES = frozenset({"stack", "kafka_broker", "tls_broker", "private_redis", "redis_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `processes` every test that starts processes through a fixture: `-m "not processes"`
    is then the service tier, PostgreSQL and Redis only (docs/testing.md, Tiers)."""
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.processes)


@pytest.fixture
def outsider() -> Iterator[psycopg.Connection]:
    """A second database session holding locks or rows behind the code's back (support/locks.py)."""
    yield from outsider_session()
