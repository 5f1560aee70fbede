"""The pure parts of the route identity probe: leaves, differences, addresses."""

from __future__ import annotations

from pytest_stackcheck.probes.identity import (
    Fingerprint,
    differences,
    direct_url,
    flatten,
)

SINGULARITY = Fingerprint(
    url="http://127.0.0.1:4000/health",
    status=200,
    fields={"status": "ok", "service": "singularity", "services.database": "ok"},
)


def test_flatten_uses_dotted_paths():
    leaves = flatten({"status": "ok", "services": {"nats": "ok"}, "tags": [1, 2]})

    assert leaves == {"status": "ok", "services.nats": "ok", "tags": "[1, 2]"}


def test_same_fields_show_no_difference():
    body = '{"status": "ok", "service": "singularity", "uptime_s": 9.5, '
    body += '"services": {"database": "ok"}}'

    assert differences(SINGULARITY, 200, body) == []


def test_other_service_is_named():
    body = '{"status": "ok", "service": "genesis", "services": {"database": "ok"}}'

    found = differences(SINGULARITY, 200, body)

    assert found == ["field service = 'genesis', the service has 'singularity'"]


def test_static_body_lists_missing_fields():
    found = differences(SINGULARITY, 200, '{"status": "ok"}')

    assert "field service missing, the service has 'singularity'" in found
    assert "field services.database missing, the service has 'ok'" in found


def test_plain_text_is_not_json():
    found = differences(SINGULARITY, 200, "ok\n")

    assert found == ["body is not JSON, the service returns a JSON object"]


def test_wildcard_hosts_map_to_loopback():
    assert direct_url("http://0.0.0.0:4000/health") == "http://127.0.0.1:4000/health"
    assert direct_url("http://[::]:4000/health") == "http://[::1]:4000/health"
    assert direct_url("http://127.0.0.1:4000/x?a=1") == "http://127.0.0.1:4000/x?a=1"
