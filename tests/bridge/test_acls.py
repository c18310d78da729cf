"""The broker ACLs `kafka_acls` prints: each principal set writes only the topics it may."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from bridge import topics
from bridge.acls import platform_acls


def printed(*args: str) -> list[list[str]]:
    out = StringIO()
    call_command("kafka_acls", *args, stdout=out)
    return [line.split() for line in out.getvalue().splitlines()]


def test_clients_write_the_open_inputs_integrations_the_gated_ones_and_the_platform_everything() -> None:
    lines = printed("--clients", "User:shop,User:crm", "--integrations", "User:erp", "--platform", "User:kp")
    assert all(line[0] == "ALLOW" for line in lines)
    writes = {(principal, name) for _, principal, operation, kind, name in lines if operation == "WRITE"}
    for client in ("User:shop", "User:crm"):
        assert {name for who, name in writes if who == client} == set(topics.OPEN_INPUTS)
    assert {name for who, name in writes if who == "User:erp"} == set(topics.GATED_INPUTS)
    platform = {(operation, kind, name) for _, who, operation, kind, name in lines if who == "User:kp"}
    assert ("ALL", "TOPIC", "*") in platform
    assert ("READ", "GROUP", "kafka-platform-bridge") in platform
    # Nobody but the platform may write what the platform produces.
    assert not {name for who, name in writes if who != "User:kp"} & topics.PLATFORM_OUTPUTS


def test_the_consumer_group_is_named_on_request() -> None:
    lines = printed("--group", "bridge-eu")
    assert ["ALLOW", "User:platform", "READ", "GROUP", "bridge-eu"] in lines


def test_every_rule_converts_to_a_kafka_acl() -> None:
    rules = platform_acls(clients=["User:a"], integrations=["User:b"], platform=["User:c"], group="g")
    acls = [rule.to_kafka() for rule in rules]
    assert len(acls) == len(rules) and all(acl.principal in {"User:a", "User:b", "User:c"} for acl in acls)
