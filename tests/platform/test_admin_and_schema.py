"""Every admin page and the OpenAPI schema render for an operator (no 500s hiding in templates)."""

from __future__ import annotations

import uuid

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse


@pytest.fixture
def superuser_client(shared_db: None) -> Client:
    user = get_user_model().objects.create_superuser(f"root-{uuid.uuid4().hex[:6]}", "r@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_every_registered_admin_changelist_renders(superuser_client: Client) -> None:
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = superuser_client.get(url)
        assert response.status_code == 200, url


def test_openapi_schema_and_docs_render(superuser_client: Client) -> None:
    schema = superuser_client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/payments/" in schema.content
    assert superuser_client.get("/api/docs/").status_code == 200
