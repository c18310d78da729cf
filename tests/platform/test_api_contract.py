"""Schemathesis against the running API: generated requests to every /api/v1/ operation, with
every check on (no 500s, status codes, content types, headers and bodies as the OpenAPI
document describes them). Bounded: a fixed number of examples per operation, derandomized."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.config import PositiveDataAcceptanceConfig
from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES

from core.roles import OPERATORS
from core.throttles import WriteRateThrottle
from tests.support.users import make_api_user

pytestmark = pytest.mark.slow  # a lifecycle test: `make test` runs it, `make test-fast` does not

EXAMPLES_PER_OPERATION = 40


@pytest.fixture
def api_schema(db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[schemathesis.BaseSchema]:
    from kafka_platform.wsgi import application

    # As Django's test client does: a request must not close the connection that holds the
    # test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    # Hundreds of generated writes a minute: the rate limit has a test of its own.
    monkeypatch.setattr(WriteRateThrottle, "THROTTLE_RATES", {"writes": "100000/min"})
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application).include(path_regex="^/api/v1/")
    # Every check stays on. A schema-valid body may still break a rule JSON Schema cannot state
    # (an amount's decimals per its currency, the fields a ledger kind needs, an Idempotency-Key
    # reused with another body): such a request is refused with 400 or 422, which is right.
    schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=[*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "400", "422"]
    )
    try:
        yield schema
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_every_answer_matches_the_document(api_schema: schemathesis.BaseSchema) -> None:
    token = Token.objects.create(user=make_api_user("schemathesis", role=OPERATORS)).key
    headers = {"Authorization": f"Token {token}"}
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers)

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as failure:  # noqa: BLE001 - report every operation's
            failures.append(f"{operation.method.upper()} {operation.path}: {failure}")
    assert not failures, "\n\n".join(failures)
