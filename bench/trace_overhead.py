"""What tracing adds to one event's hop (decode, dispatch, task run, outbox record), in-process.

    DJANGO_DEBUG=1 python -m bench.trace_overhead [--n 20000]

Times the hop's tracing work alone, with the codec work it rides on, in three modes: no tracing
code at all (the baseline: decode, task payload, build and encode the emitted event), pass-through
(nothing exports: the default), and spans exported (to an SDK processor that drops them, which is
the per-span cost an OTLP export adds before its background thread; and to a JSON-lines file).
No database, broker or network: it isolates the CPU cost the hooks add per event.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kafka_platform.settings")

import django  # noqa: E402

django.setup()

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor  # noqa: E402

from bridge import codec, topics  # noqa: E402
from core import tracing  # noqa: E402
from tests.support.builders import payment_request  # noqa: E402

TOPIC = topics.PAYMENT_REQUESTED.name
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TASK = "payments.process_payment_requested"


class Discard(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        pass


def message() -> codec.IncomingMessage:
    event = codec.build_event(
        event_type=TOPIC, domain="payments", subject="pay_1", data=payment_request(), traceparent=PARENT
    )
    value, headers = codec.encode_event(event)
    return codec.IncomingMessage(TOPIC, 0, 1, b"pay_1", value, headers)


def untraced_hop(msg: codec.IncomingMessage) -> None:
    """The same codec work with none of the tracing calls."""
    envelope = codec.decode(msg)
    payload = envelope.to_task_payload()
    event = codec.Envelope.from_task_payload(payload)
    out = codec.build_event(event_type=TOPIC, domain="payments", subject="s", data=event.data)
    codec.encode_event(out)


def traced_hop(msg: codec.IncomingMessage) -> None:
    """What the bridge, the task base and the outbox do around the same codec work."""
    envelope = codec.decode(msg)
    payload = tracing.dispatch_payload(envelope, (TASK,))
    with tracing.span(TASK, parent=tracing.task_parent(payload, {}), kind=tracing.SpanKind.CONSUMER):
        event = codec.Envelope.from_task_payload(payload)
        with tracing.recording(TOPIC, correlation_id=event.correlation_id) as context:
            out = codec.build_event(
                event_type=TOPIC,
                domain="payments",
                subject="s",
                data=event.data,
                traceparent=context.traceparent if context else None,
                tracestate=context.tracestate if context else None,
            )
            tracing.annotate(**{"cloudevents.event_id": out["id"]})
            codec.encode_event(out)


def per_call_us(fn: Callable[[], None], n: int) -> float:
    for _ in range(min(n, 1000)):
        fn()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - started) / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    n = parser.parse_args().n
    msg = message()
    tracing.configure(service="bench")
    baseline = per_call_us(lambda: untraced_hop(msg), n)
    rows = [
        ("no tracing code (baseline)", baseline),
        ("pass-through (default)", per_call_us(lambda: traced_hop(msg), n)),
    ]

    tracing.configure(service="bench", export_file=os.devnull)  # a provider, then swap its processor
    provider = tracing._provider
    provider._active_span_processor._span_processors = (Discard(),)
    rows.append(("spans made, dropped (OTLP before export)", per_call_us(lambda: traced_hop(msg), n)))
    with tempfile.TemporaryDirectory() as tmp:
        tracing.configure(service="bench", export_file=os.path.join(tmp, "spans.jsonl"))
        rows.append(("spans to TRACING_EXPORT_FILE", per_call_us(lambda: traced_hop(msg), n // 4)))
    tracing.configure(service="bench")

    print(f"one hop, {n} runs, best of 3 (µs per event):")
    for name, us in rows:
        print(f"  {name:<44} {us:8.1f}  (+{us - baseline:.1f})")


if __name__ == "__main__":
    main()
