"""`make bench`: payment requests through the whole pipeline, against the naive baseline bridge.

Each variant gets a fresh broker, database and Redis database, the same Celery worker and outbox
relay, and N requests; it reports throughput, end-to-end latency (request sent to result event
written) and CPU seconds per 1,000 events of the bridge, relay and worker process trees. With
--rate it offers a fixed load instead of a backlog, which is what latency should be read at.

`--scenario orders` runs orders instead of payments, through the pipeline only: each order of one
unit of a stocked product is placed on `orders.order-requested`, reserves its stock, asks payments
for its money and is confirmed once the capture comes back; its latency runs from the request's
send to the `orders.order-status-updated` record that says `confirmed`.

Its broker, bridge, relay and worker run in process groups of their own and are stopped when the
benchmark ends in any way: done, failed, timed out, SIGTERM, SIGINT or SIGHUP.

BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/kp_bench, dropped and created
afresh per variant) and BENCH_REDIS_URL (default redis://127.0.0.1:6379/9, flushed) say where.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.embedded import EmbeddedBroker  # noqa: E402
from core.codec import dumps  # noqa: E402
from tests.support.processes import Proc, celery, child_env, manage  # noqa: E402

BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kp_bench")
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
REQUESTED = "payments.payment-requested"
RESULTS = ["payments.payment-processed", "payments.payment-failed"]
ORDER_REQUESTED = "orders.order-requested"
ORDER_STATUS_UPDATED = "orders.order-status-updated"
# The orders scenario's catalog: one unit of one of these per order, enough stock for every order.
ORDER_PRODUCTS = 20
ORDER_PRICE = "12.50"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    events: int
    seconds: float
    events_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_s_per_1000: float
    failed: int
    # A payment's whole chain: its ledger posting, its audit records and its notification, from
    # the request's send to the last of them (the pipeline only; the naive bridge runs the same
    # worker, so its chain is the same work).
    chain_p50_ms: float | None = None
    chain_p99_ms: float | None = None
    # CPU seconds per 1,000 payments of what the platform stands on, beside its own processes.
    postgres_cpu_s_per_1000: float | None = None
    broker_cpu_s_per_1000: float | None = None
    # Where the time goes (HOP_NAMES): p50/p99 ms per hop.
    hops: dict[str, dict[str, float]] | None = None


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL server process (the cluster's; read it on a quiet machine)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() not in {"postgres", "postmaster"}:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += sum(int(x) for x in fields[11:13]) / CLOCK_TICKS
    return total


# Every timestamp the platform writes on a payment's way, one row per payment (all clocks are this
# machine's), joined by hash on exact keys: a correlated LIKE per payment took minutes at 18,000.
MARKS_SQL = """
with p as (select unnest(%(ids)s::text[]) as payment_id),
pay as (select pay.id, pay.payment_id, pay.created_at
          from payments_payment pay join p on p.payment_id = pay.payment_id),
tr as (select payment_id,
              min(created_at) filter (where to_status = 'processing') as processing,
              min(created_at) filter (where to_status = 'captured') as captured
         from payments_paymenttransition where payment_id in (select id from pay) group by payment_id),
o as (select key, min(created_at) as created, min(sent_at) as sent from bridge_outboxevent
       where topic = 'payments.payment-processed' group by key),
l as (select transaction_id, max(posted_at) as posted from ledger_transaction
       where transaction_id like 'payment:%%' group by transaction_id),
a as (select subject_id, max(recorded_at) as recorded from audit_auditevent group by subject_id),
n as (select split_part(notification_id, ':', 2) as payment_id, min(created_at) as created,
             min(sent_at) as sent
        from notifications_notification where notification_id like 'payment:%%:captured:%%'
       group by 1)
select pay.payment_id, pay.created_at, tr.processing, tr.captured, o.created, o.sent, l.posted,
       a.recorded, n.created, n.sent
  from pay
  left join tr on tr.payment_id = pay.id
  left join o on o.key = pay.payment_id
  left join l on l.transaction_id = 'payment:' || pay.payment_id
  left join a on a.subject_id = pay.payment_id
  left join n on n.payment_id = pay.payment_id
"""
# Columns of MARKS_SQL after the payment id; the chain is complete when these are all there.
CHAIN_MARKS = (6, 7, 9)  # ledger posted, last audit record, notification sent


def payment_marks(database_url: str, sent: dict[str, float], timeout_s: float = 120.0) -> list[Any]:
    """MARKS_SQL's rows for the payments of `sent`, once every chain is complete or the timeout
    passes."""
    deadline = time.time() + timeout_s
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            rows = conn.execute(MARKS_SQL, {"ids": list(sent)}).fetchall()
            complete = sum(1 for row in rows if all(row[c] for c in CHAIN_MARKS))
            if complete == len(sent) or time.time() > deadline:
                return rows
            stop_if_signalled()
            time.sleep(0.5)


def chain_latencies(rows: list[Any], sent: dict[str, float]) -> list[float]:
    """Seconds from each request's send to the last piece of its chain (posting, audit, notice),
    for the payments whose chain is complete."""
    return [
        max(row[c].timestamp() for c in CHAIN_MARKS) - sent[row[0]]
        for row in rows
        if all(row[c] for c in CHAIN_MARKS)
    ]


# Where a payment's time goes: the hops between consecutive marks of MARKS_SQL.
HOP_NAMES = [
    # (hop, from mark, to mark); mark 0 is the request's send by the benchmark.
    ("request sent -> payment row (Kafka, bridge, Redis, worker pick-up, accept)", 0, 1),
    ("payment row -> processing (fraud check)", 1, 2),
    ("processing -> captured (gateway)", 2, 3),
    ("captured -> outbox row", 3, 4),
    ("outbox row -> published (relay)", 4, 5),
    ("published -> ledger posting (Kafka, bridge, Redis, worker)", 5, 6),
    ("published -> last audit record", 5, 7),
    ("published -> notification queued", 5, 8),
    ("notification queued -> sent", 8, 9),
]


def hop_latencies(rows: list[Any], sent: dict[str, float]) -> dict[str, dict[str, float]]:
    """Median and p99 in ms of each hop of HOP_NAMES, over the payments that have both its marks."""
    hops: dict[str, dict[str, float]] = {}
    for name, start, end in HOP_NAMES:
        spans = []
        for row in rows:
            marks = [sent[row[0]], *(ts.timestamp() if ts else None for ts in row[1:])]
            first, last = marks[start], marks[end]
            if first is not None and last is not None:
                spans.append((last - first) * 1000)
        if len(spans) > 1:
            q = statistics.quantiles(spans, n=100)
            hops[name] = {"p50_ms": round(q[49], 1), "p99_ms": round(q[98], 1), "payments": len(spans)}
    return hops


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live and reaped descendants."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    own = sum(int(x) for x in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(c) for c in children.read_text().split()] if children.exists() else []
    return own + sum(cpu_seconds(k) for k in kids)


def fresh_database() -> str:
    url = urlsplit(BENCH_DATABASE_URL)
    name = url.path.lstrip("/")
    with psycopg.connect(urlunsplit(url._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        if os.environ.get("BENCH_LOG_STATEMENTS"):
            # An experiment: every statement in PostgreSQL's server log, to count them per request.
            conn.execute(f"ALTER DATABASE \"{name}\" SET log_statement = 'all'")
        if os.environ.get("BENCH_ASYNC_COMMIT"):
            # An experiment, never a setting for money: how much of the time is commit (fsync) waits.
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return BENCH_DATABASE_URL


def structured(event_type: str, data: dict[str, Any]) -> bytes:
    """`data` as a structured CloudEvent of `event_type`, as an outside producer sends it."""
    return dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/bench",
            "type": event_type,
            "time": "2026-11-23T00:00:00Z",
            "data": data,
        }
    )


def request_event(i: int, run: str) -> tuple[str, bytes]:
    payment_id = f"bench-{run}-{i}"
    data = {
        "paymentId": payment_id,
        "userId": f"user-{run}-{i}",
        "amount": f"{10 + i % 90}.{i % 100:02d}",
        "currency": "USD",
        "paymentMethod": {"type": "card", "token": "tok_visa"},
        "merchantId": f"merchant-{i % 20}",
        # An email per customer: the whole chain includes the notification (and no recipient's
        # rate limit holds it back).
        "customer": {"email": f"customer-{run}-{i}@bench.example"},
        "metadata": {"orderId": f"order-{i}"},
    }
    return payment_id, structured(REQUESTED, data)


def order_event(i: int, run: str) -> tuple[str, bytes]:
    order_id = f"bench-{run}-{i}"
    data = {
        "orderId": order_id,
        "userId": f"shopper-{run}-{i}",
        "items": [{"productId": f"bench-product-{i % ORDER_PRODUCTS}", "quantity": 1, "price": ORDER_PRICE}],
        "currency": "USD",
        "paymentMethod": {"type": "card", "token": "tok_visa"},
        "customer": {"email": f"shopper-{run}-{i}@bench.example"},
    }
    return order_id, structured(ORDER_REQUESTED, data)


@dataclass(frozen=True)
class Scenario:
    """What the benchmark sends, where the answers come back, and which answer ends a request."""

    name: str
    request_topic: str
    result_topics: tuple[str, ...]
    build: Callable[[int, str], tuple[str, bytes]]

    def outcome(self, topic: str, value: bytes | None) -> str | None:
        """ "ok", "failed", or None for a record that does not end the request."""
        if self.name == "payments":
            return "ok" if topic == RESULTS[0] else "failed"
        status = json.loads(value or b"{}").get("data", {}).get("newStatus")
        if status == "confirmed":
            return "ok"
        return "failed" if status in ("rejected", "cancelled") else None


SCENARIOS = {
    "payments": Scenario("payments", REQUESTED, tuple(RESULTS), request_event),
    "orders": Scenario("orders", ORDER_REQUESTED, (ORDER_STATUS_UPDATED,), order_event),
}


def stock_products(env: dict[str, str], units: int) -> None:
    """The orders scenario's catalog, each product with `units` free to sell."""
    code = (
        "from decimal import Decimal\n"
        "from django.db import transaction\n"
        "from orders.services import product_set\n"
        f"for i in range({ORDER_PRODUCTS}):\n"
        "    with transaction.atomic():\n"
        f"        product_set(product_id=f'bench-product-{{i}}', name='Bench mug',"
        f" price=Decimal('{ORDER_PRICE}'), currency='USD', available={units}, actor='system:bench')\n"
    )
    subprocess.run(manage("shell", "-c", code), env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def run_variant(
    name: str, n: int, rate: float | None, workers: int, scenario: Scenario | None = None
) -> Result:
    scenario = scenario or SCENARIOS["payments"]
    broker = EmbeddedBroker().start()
    procs: list[Proc] = []
    try:
        return run_on(
            broker,
            name,
            n,
            rate,
            workers,
            procs,
            broker_pid=broker.process.pid if broker.process else None,
            scenario=scenario,
        )
    finally:
        # The broker last: the bridge commits its offsets on the way out.
        for proc in procs:
            proc.stop()
        broker.stop()


def run_on(
    broker: EmbeddedBroker,
    name: str,
    n: int,
    rate: float | None,
    workers: int,
    procs: list[Proc],
    broker_pid: int | None = None,
    scenario: Scenario | None = None,
) -> Result:
    """One variant on `broker`; each process it starts is appended to `procs` for the caller to stop."""
    scenario = scenario or SCENARIOS["payments"]
    database_url = fresh_database()
    redis.Redis.from_url(BENCH_REDIS).flushdb()
    env = child_env(
        {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": BENCH_REDIS,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "KAFKA_CONSUMER_GROUP": f"bench-{name}",
            "BRIDGE_METRICS_PORT": "0",
            "WORKER_METRICS_PORT": "0",
            "LOG_LEVEL": "WARNING",
            # Production settings: DEBUG keeps every SQL statement in memory and costs CPU.
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": f"bench-{uuid.uuid4().hex}",
            "WEBHOOK_SIGNING_SECRET": f"whsec_bench-{uuid.uuid4().hex}",
            "AUDIT_CHECKPOINT_KEY": f"bench-audit-{uuid.uuid4().hex}",
            "PLATFORM_EVENT_KEY": f"bench-events-{uuid.uuid4().hex}",
            "METRICS_TOKEN": f"bench-metrics-{uuid.uuid4().hex}",
            # The benchmark's embedded broker speaks PLAINTEXT only.
            "PLATFORM_ALLOW_INSECURE_KAFKA": "1",
            # Notifications of the benchmark's payments go nowhere; production mode refuses that
            # unless told.
            "PLATFORM_ALLOW_CONSOLE_PROVIDERS": "1",
            "DJANGO_ALLOWED_HOSTS": "localhost",
            "PAYMENTS_FRAUD_VELOCITY_MAX": "1000000",
        }
    )
    log_dir = Path(os.environ.get("BENCH_LOG_DIR", "/tmp")) / f"bench-{name}"
    log_dir.mkdir(parents=True, exist_ok=True)

    subprocess.run(manage("migrate", "-v0"), env=env, check=True, cwd=ROOT)
    subprocess.run(
        manage("kafka_topics", "--create"), env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    if scenario.name == "orders":
        stock_products(env, units=n)
    worker = Proc(
        "worker",
        celery(
            "worker",
            "-Q",
            "payments,ledger,notifications,audit,default",
            "-c",
            str(workers),
            "-l",
            "warning",
            "--without-mingle",
            "--without-gossip",
        ),
        env,
        log_dir,
    )
    if name == "pipeline":
        bridges = [Proc("bridge", manage("run_bridge", "--metrics-port", "0"), env, log_dir)]
    else:
        bridges = [
            Proc("bridge", [sys.executable, "-m", "bench.naive_bridge"], env, log_dir),
            Proc("relay", manage("relay_outbox"), env, log_dir),
        ]
    for proc in (worker, *bridges):
        procs.append(proc.start())
    return drive(
        broker.bootstrap,
        n,
        rate,
        procs,
        # The per-hop marks are a payment's; an order's latency is its result's.
        database_url=database_url if scenario.name == "payments" else None,
        broker_pid=broker_pid,
        scenario=scenario,
    )


def drive(
    bootstrap: str,
    n: int,
    rate: float | None,
    procs: list[Proc],
    *,
    database_url: str | None = None,
    broker_pid: int | None = None,
    scenario: Scenario | None = None,
) -> Result:
    scenario = scenario or SCENARIOS["payments"]
    results = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    partitions = [
        TopicPartition(t, p) for t in scenario.result_topics for p in results.partitions_for_topic(t) or []
    ]
    results.assign(partitions)
    results.seek_to_beginning(*partitions)
    time.sleep(5)  # let the bridge join its group and the worker start, outside the measurement
    cpu_before = sum(cpu_seconds(p.process.pid) for p in procs if p.process)
    postgres_before = postgres_cpu_seconds()
    broker_before = cpu_seconds(broker_pid) if broker_pid else 0.0
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    run = uuid.uuid4().hex[:6]
    sent: dict[str, float] = {}
    sent_at: dict[str, float] = {}  # every request's send time (`sent` forgets answered ones)
    latencies: list[float] = []
    failed = 0
    start = time.time()
    produced = 0
    interval = 1.0 / rate if rate else 0.0
    last_result = start
    deadline = start + max(600.0, n / 20)
    while len(latencies) + failed < n and time.time() < deadline:
        stop_if_signalled()
        while produced < n and (not rate or time.time() >= start + produced * interval):
            key, value = scenario.build(produced, run)
            sent[key] = sent_at[key] = time.time()
            producer.send(scenario.request_topic, key=key.encode(), value=value)
            produced += 1
            if not rate and produced % 1000 == 0:
                break
        producer.flush()
        for tp, records in results.poll(timeout_ms=20 if produced < n else 500).items():
            for record in records:
                key = (record.key or b"").decode()
                outcome = scenario.outcome(tp.topic, record.value) if key in sent else None
                if outcome == "ok":
                    latencies.append(record.timestamp / 1000 - sent.pop(key))
                elif outcome == "failed":
                    sent.pop(key)
                    failed += 1
                else:
                    continue
                last_result = time.time()
    cpu = sum(cpu_seconds(p.process.pid) for p in procs if p.process) - cpu_before
    postgres_cpu = postgres_cpu_seconds() - postgres_before
    broker_cpu = (cpu_seconds(broker_pid) - broker_before) if broker_pid else None
    producer.close()
    results.close()
    done = len(latencies) + failed
    if done < n:
        raise RuntimeError(f"only {done} of {n} results arrived; logs in {procs[0].log_path.parent}")
    seconds = last_result - start
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    chain_p50 = chain_p99 = hops = None
    if database_url:
        marks = payment_marks(database_url, sent_at)
        chains = chain_latencies(marks, sent_at)
        if len(chains) > 1:
            chain_q = statistics.quantiles(chains, n=100)
            chain_p50, chain_p99 = round(chain_q[49] * 1000, 1), round(chain_q[98] * 1000, 1)
        hops = hop_latencies(marks, sent_at)
    return Result(
        events=n,
        seconds=round(seconds, 2),
        events_per_s=round(n / seconds, 1),
        p50_ms=round(quantiles[49] * 1000, 1),
        p95_ms=round(quantiles[94] * 1000, 1),
        p99_ms=round(quantiles[98] * 1000, 1),
        cpu_s_per_1000=round(cpu / n * 1000, 2),
        failed=failed,
        chain_p50_ms=chain_p50,
        chain_p99_ms=chain_p99,
        postgres_cpu_s_per_1000=round(postgres_cpu / n * 1000, 2),
        broker_cpu_s_per_1000=round(broker_cpu / n * 1000, 2) if broker_cpu is not None else None,
        hops=hops,
    )


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


_stopped_by: int | None = None


def exit_on_signal(signum: int, frame: Any) -> None:
    """SIGINT, SIGTERM and SIGHUP end the benchmark by an exception, so that every `finally` stops
    its processes (their own process groups do not receive the signal).

    kafka-python's IO loop catches BaseException inside its tasks, so an exception raised while
    the main thread is in there can be lost: the signal is also remembered, and the loops that
    wait call `stop_if_signalled` (a Ctrl-C once ran a benchmark to its end that way)."""
    global _stopped_by
    _stopped_by = signum
    raise SystemExit(128 + signum)


def stop_if_signalled() -> None:
    if _stopped_by is not None:
        raise SystemExit(128 + _stopped_by)


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, exit_on_signal)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--rate", type=float, help="offered load in payments/s (default: a backlog)")
    parser.add_argument("--workers", type=int, default=4, help="Celery worker concurrency")
    parser.add_argument("--only", choices=["pipeline", "naive"])
    parser.add_argument("--out", default=str(ROOT / "bench/results/latest.json"))
    parser.add_argument(
        "--sweep",
        help="comma-separated offered rates (payments/s), each run for --duration seconds through the "
        "pipeline; written under `sweep` and drawn as bench/results/latency.png",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rate of a --sweep")
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="payments",
        help="payments (default), or orders: placed, stock reserved, paid, confirmed (the pipeline only)",
    )
    args = parser.parse_args()
    if args.sweep:
        sweep(args)
        return

    scenario = SCENARIOS[args.scenario]
    report: dict[str, Any] = {
        "scenario": scenario.name,
        "n": args.n,
        "rate": args.rate,
        "workers": args.workers,
        "machine": machine(),
    }
    for name in ("pipeline", "naive"):
        if (args.only and args.only != name) or (scenario.name != "payments" and name == "naive"):
            continue
        what = f"{args.n} {scenario.name}" + (f" at {args.rate}/s" if args.rate else "")
        print(f"running {name}: {what} ...", flush=True)
        report[name] = asdict(run_variant(name, args.n, args.rate, args.workers, scenario))
    if "pipeline" in report and "naive" in report:
        report["speedup"] = round(report["pipeline"]["events_per_s"] / report["naive"]["events_per_s"], 2)

    columns = ["events_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_s_per_1000", "seconds", "failed"]
    print(f"\n{'variant':10}" + "".join(f"{c:>16}" for c in columns))
    for name in ("pipeline", "naive"):
        if name in report:
            print(f"{name:10}" + "".join(f"{report[name][c]:>16}" for c in columns))
    if "speedup" in report:
        print(f"\npipeline / naive throughput: {report['speedup']}x")
    for name in ("pipeline", "naive"):
        if report.get(name, {}).get("hops"):
            print_hops(name, report[name]["hops"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def print_hops(title: str, hops: dict[str, dict[str, float]]) -> None:
    print(f"\nwhere a payment's time goes ({title}):")
    print(f"{'hop':76}{'p50 ms':>10}{'p99 ms':>10}")
    for hop, stats in hops.items():
        print(f"{hop:76}{stats['p50_ms']:>10}{stats['p99_ms']:>10}")


def sweep(args: argparse.Namespace) -> None:
    """Each offered rate for a fixed time: delivered rate, latency of the result event and of the
    whole chain, CPU per 1,000 payments; then a plot of latency against offered load."""
    rates = [float(r) for r in args.sweep.split(",") if r.strip()]
    rows: list[dict[str, Any]] = []
    for rate in rates:
        n = max(int(rate * args.duration), 1)
        print(f"sweep: {rate:g}/s for {args.duration:g} s ({n} payments) ...", flush=True)
        result = run_variant("pipeline", n, rate, args.workers)
        rows.append(
            {
                "offered": rate,
                "delivered": result.events_per_s,
                "p50_ms": result.p50_ms,
                "p99_ms": result.p99_ms,
                "chain_p99_ms": result.chain_p99_ms,
                "cpu_s_per_1000": result.cpu_s_per_1000,
                "postgres_cpu_s_per_1000": result.postgres_cpu_s_per_1000,
                "broker_cpu_s_per_1000": result.broker_cpu_s_per_1000,
                "hops": result.hops,
            }
        )
    columns = [c for c in rows[0] if c != "hops"] if rows else []
    print("\n" + "".join(f"{c:>24}" for c in columns))
    for row in rows:
        print("".join(f"{row[c]!s:>24}" for c in columns))
    for row in rows:
        if row["hops"]:
            print_hops(f"{row['offered']:g}/s offered", row["hops"])
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report.update(
        {"sweep": rows, "sweep_duration_s": args.duration, "machine": machine(), "load": os.getloadavg()}
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot = out.parent / "latency.png"
    draw_latency(rows, plot)
    print(f"wrote {out} and {plot}")


def draw_latency(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offered = [row["offered"] for row in rows]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for key, label in (
        ("p50_ms", "result p50"),
        ("p99_ms", "result p99"),
        ("chain_p99_ms", "whole chain p99"),
    ):
        axes.plot(offered, [row[key] for row in rows], marker="o", label=label)
    axes.set_xlabel("offered load (payments/s)")
    axes.set_ylabel("latency (ms)")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    axes.set_title("kafka-platform: latency against offered load")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
