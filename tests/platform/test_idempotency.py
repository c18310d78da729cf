"""Idempotency-Key semantics of POST endpoints, on a minimal DRF view over the real database."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from core.idempotency import idempotent


class CountingView(APIView):
    calls = 0
    delay_s = 0.0

    def post(self, request: Request) -> Response:
        def handle() -> Response:
            type(self).calls += 1
            time.sleep(self.delay_s)
            if request.data.get("fail"):
                return Response({"detail": "no"}, status=400)
            return Response({"n": type(self).calls}, status=202, headers={"Location": "/things/1/"})

        return idempotent(request, scope="things", handler=handle)


@pytest.fixture
def call(shared_db: None):
    CountingView.calls, CountingView.delay_s = 0, 0.0
    users = {
        name: get_user_model().objects.create_user(f"{name}-{uuid.uuid4().hex[:6]}")
        for name in ("alice", "bob")
    }

    def _call(body: dict, key: str | None = "k1", user: str = "alice") -> Response:
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        request = APIRequestFactory().post("/things/", body, format="json", **headers)
        force_authenticate(request, user=users[user])
        return CountingView.as_view()(request)

    return _call


def test_missing_key_is_400(call) -> None:
    assert call({"a": 1}, key=None).status_code == 400
    assert CountingView.calls == 0


def test_same_key_same_body_replays_first_answer(call) -> None:
    first, second = call({"a": 1}), call({"a": 1})
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.data == first.data == {"n": 1}
    assert second["Idempotent-Replayed"] == "true" and second["Location"] == "/things/1/"
    assert CountingView.calls == 1


def test_same_key_different_body_is_422(call) -> None:
    call({"a": 1})
    assert call({"a": 2}).status_code == 422
    assert CountingView.calls == 1


def test_keys_are_scoped_per_client(call) -> None:
    call({"a": 1}, user="alice")
    assert call({"a": 1}, user="bob").data == {"n": 2}


def test_error_answer_releases_the_key(call) -> None:
    assert call({"fail": True}).status_code == 400
    assert call({"fail": True}).status_code == 400
    assert CountingView.calls == 2


def test_concurrent_requests_with_one_key_run_once_and_the_other_gets_409(call) -> None:
    CountingView.delay_s = 1.0
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(call({"a": 1}).status_code)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [202, 409]
    assert CountingView.calls == 1
