"""The bridge's subscription: the routed topics and every audit.* topic, renewed as topics change.

kafka-python (3.0.12) rejoins the group by itself when its metadata shows that the topics its
pattern matches changed (an audit topic created or deleted, partitions added). That rejoin is
finished only by a `poll()` still waiting for it: once the JoinGroup answer is in, the coordinator
no longer reports that it needs to rejoin, so if the answer came while the bridge was busy
between polls (dispatching, committing, or in a poll blocked on an offset fetch), nobody applies
the assignment. The member keeps no partitions, sends no heartbeats and is evicted; its
LeaveGroup then fails with UnknownMemberIdError. A fresh subscription has no such gap: the join
is retried until it completes.

So the bridge lists the matching topics itself every `refresh_s` seconds and, when they changed,
commits what it dispatched and subscribes anew. kafka-python's own metadata refreshes (every
five minutes, and after each join) may notice a change first; if their rejoin stalls, the renewal
repairs it. The pattern
stays the subscription (not a list of names): kafka-python asks for the metadata of a named topic
with auto-creation on, whatever its `allow_auto_create_topics`, which would bring a deleted audit
topic back on brokers that auto-create topics.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer
from kafka.errors import KafkaError

logger = logging.getLogger(__name__)

# Each matching topic with its number of partitions: a change in either needs a new assignment.
Layout = frozenset[tuple[str, int]]


def matching_layout(consumer: KafkaConsumer, pattern: str) -> Layout:
    """The topics `pattern` matches now, with their partition counts (one metadata request).

    A topic whose partitions are not known yet (it is being created) is left for the next look,
    so that its creation renews the subscription once, not twice.
    """
    regex = re.compile(pattern)
    names = [name for name in consumer.topics() if regex.match(name)]
    counts = {name: len(consumer.partitions_for_topic(name)) for name in names}
    return frozenset((name, n) for name, n in counts.items() if n)


class PatternSubscription:
    """Subscribes `consumer` to `pattern` and renews the subscription when the matches change.

    `release(gone)` is called before a renewal, with the topics no longer there: it commits what
    was dispatched and forgets the assignment, and answers False when offsets are still
    uncommitted (the renewal then waits for the next look rather than have them redelivered).
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        listener: AsyncConsumerRebalanceListener,
        *,
        pattern: str,
        refresh_s: float,
        release: Callable[[set[str]], bool],
    ) -> None:
        self.consumer = consumer
        self.listener = listener
        self.pattern = pattern
        self.refresh_s = refresh_s
        self.release = release
        self.layout: Layout | None = None
        self._next_look = 0.0

    def start(self) -> None:
        # Listed before subscribing: a topic created in between is a change at the next look.
        self.layout = self._look()
        self.consumer.subscribe(pattern=self.pattern, listener=self.listener)
        self._next_look = time.monotonic() + self.refresh_s

    def follow(self) -> None:
        """Called from the consume loop: renew the subscription if the matching topics changed."""
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + self.refresh_s
        layout = self._look()
        if layout is None or layout == self.layout:
            return
        if self.layout is None:  # the first successful look: nothing to compare with
            self.layout = layout
            return
        before, after = dict(self.layout), dict(layout)
        if not self.release(before.keys() - after.keys()):
            return
        logger.info(
            "bridge: topics to consume changed (added %s, removed %s, resized %s); subscribing anew",
            sorted(after.keys() - before.keys()),
            sorted(before.keys() - after.keys()),
            sorted(name for name in after.keys() & before.keys() if after[name] != before[name]),
        )
        self.consumer.unsubscribe()
        self.consumer.subscribe(pattern=self.pattern, listener=self.listener)
        self.layout = layout

    def _look(self) -> Layout | None:
        try:
            return matching_layout(self.consumer, self.pattern)
        except KafkaError as exc:
            logger.warning("bridge: could not list topics (%s); will look again", exc)
            return None
