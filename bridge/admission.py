"""Who may produce what: whether the bridge acts on a decoded record, given its topic and signature."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from bridge import signing, topics
from bridge.codec import Envelope, IncomingMessage, PoisonMessage

UNAUTHENTICATED = "unauthenticated"
SCHEMA_VIOLATION = "schema_violation"


def trusted_inputs() -> frozenset[str]:
    """The gated input topics listed in KAFKA_TRUSTED_INPUTS; refuses a listed topic that is not one.

    Listing an open input changes nothing and listing a platform output would let anyone who can
    write to it speak as the platform: both are configuration mistakes worth stopping for.
    """
    listed = frozenset(name.strip() for name in settings.KAFKA_TRUSTED_INPUTS if name.strip())
    wrong = sorted(listed - topics.GATED_INPUTS)
    if wrong:
        raise ImproperlyConfigured(
            "KAFKA_TRUSTED_INPUTS may list only gated input topics "
            f"({', '.join(sorted(topics.GATED_INPUTS))}); not {', '.join(wrong)}"
        )
    return listed


def admit(message: IncomingMessage, envelope: Envelope) -> Envelope:
    """`envelope` when the bridge may act on it, else PoisonMessage for the DLQ.

    Unauthenticated: a signature that does not verify (whatever the topic: a record claiming to be
    the platform's and failing is forged or altered), an unsigned record on a platform output, or
    one on a gated input not listed in KAFKA_TRUSTED_INPUTS. A schema violation: a CloudEvents
    type other than the topic's, which would otherwise route the record as another topic's.
    """
    topic = message.topic
    claims_signature = any(k.lower() == signing.SIGNATURE_HEADER for k, _ in message.headers)
    if not envelope.signed:
        if claims_signature:
            raise PoisonMessage(UNAUTHENTICATED, f"{topic}: the platform signature does not verify")
        if topic in topics.GATED_INPUTS and topic not in trusted_inputs():
            raise PoisonMessage(
                UNAUTHENTICATED,
                f"{topic}: unsigned records are refused here unless the topic is in KAFKA_TRUSTED_INPUTS",
            )
        if topics.is_platform_output(topic):
            raise PoisonMessage(
                UNAUTHENTICATED, f"{topic}: only the platform produces here; the record is unsigned"
            )
    if envelope.type != topic:
        raise PoisonMessage(
            SCHEMA_VIOLATION, f"{topic}: CloudEvents type {envelope.type!r} differs from the topic's"
        )
    return envelope
