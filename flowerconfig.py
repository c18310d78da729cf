"""Flower's configuration: `celery -A kafka_platform flower` reads this file from the working directory.

Basic auth comes from the FLOWER_BASIC_AUTH setting ("user:password", comma-separated); with
DJANGO_DEBUG off Flower refuses to start without it, or with compose's development pair. Flower
is read-only: its API would otherwise run any registered task with any arguments (a ledger
topup, say) for whoever holds the basic-auth password, past the admin's permissions and the
audit log; tasks are started by the platform, and revoked or retried through it.
Logs are the platform's JSON lines. Tornado turns every public module-level name that matches an
option into that option, so only `basic_auth` and `read_only` are public here.
"""

from __future__ import annotations

from logging.config import dictConfig as _dict_config

from django.conf import settings as _settings
from django.core.exceptions import ImproperlyConfigured as _ImproperlyConfigured

# docker/compose.yml's development default: everyone who has read the repository knows it.
_COMPOSE_PAIR = "flower:flower-dev-only"


def _basic_auth() -> list[str]:
    pairs = list(_settings.FLOWER_BASIC_AUTH)
    if not pairs and not _settings.DEBUG:
        raise _ImproperlyConfigured(
            "FLOWER_BASIC_AUTH is required when DJANGO_DEBUG=0: set user:password (comma-separated pairs)."
        )
    for pair in pairs:
        user, _, password = pair.partition(":")
        if not user or not password:
            raise _ImproperlyConfigured("FLOWER_BASIC_AUTH entries are user:password, both non-empty.")
        if pair.strip() == _COMPOSE_PAIR and not _settings.DEBUG:
            raise _ImproperlyConfigured(
                "FLOWER_BASIC_AUTH is compose's development default while DJANGO_DEBUG=0: "
                "set a user:password of your own."
            )
    return pairs


basic_auth = _basic_auth()
# No task apply/send/abort, revoke, rate limits, pool or worker control: Flower watches only.
read_only = True

# Tornado installed its own plain handler while parsing the command line; JSON lines instead.
_dict_config(_settings.LOGGING)
