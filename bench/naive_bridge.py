"""The naive baseline bridge the benchmark compares against: per message, one `.delay()`-style
publish and one synchronous offset commit. Same codec and validation as the real bridge, so the
difference measured is the dispatching, not the parsing."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kafka_platform.settings")
    django.setup()
    from django.conf import settings
    from kafka.structs import OffsetAndMetadata

    from bridge import codec, routing
    from bridge.clients import new_consumer
    from bridge.deadletters import dead_letter
    from kafka_platform.celery import app as celery_app

    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    consumer = new_consumer(group_id=settings.KAFKA_CONSUMER_GROUP)
    consumer.subscribe(pattern=routing.subscription_pattern())
    print("naive bridge consuming", flush=True)
    while not stopping:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                message = codec.IncomingMessage(
                    record.topic,
                    record.partition,
                    record.offset,
                    record.key,
                    record.value,
                    list(record.headers or []),
                )
                try:
                    envelope, route = routing.validate(codec.decode(message))
                except codec.PoisonMessage as poison:
                    dead_letter(message, reason=poison.reason, error=str(poison))
                else:
                    for task_name in route.tasks:
                        celery_app.send_task(task_name, args=[envelope.to_task_payload()])
                consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
    consumer.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
