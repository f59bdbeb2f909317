"""The OpenAPI schema tells a client every answer it can get (issue 25): each operation
declares the errors it can answer, each with the one error schema, and every field of every
schema says what it means. The expected statuses are written here from docs/api.md and the
domain's refusals, independently of the routers' declarations."""

from __future__ import annotations

import pytest

AUTH = {401, 403, 503}  # every operation but /health checks a token (and needs the database)
BODY = {408, 413, 415, 422}  # a body is read: stalled, too large, not JSON, invalid
PARAMS = {422}
EXPECTED = {
    ("POST", "/ingest"): AUTH | BODY | {409},
    ("GET", "/keyring"): AUTH,
    ("POST", "/warrants"): AUTH | BODY,
    ("GET", "/warrants"): AUTH,
    ("GET", "/warrants/{warrant_id}"): AUTH | PARAMS | {404},
    ("POST", "/warrants/{warrant_id}/revoke"): AUTH | BODY | {404, 409},
    ("GET", "/warrants/{warrant_id}/records"): AUTH | PARAMS | {404},
    ("POST", "/requests"): AUTH | BODY | {404},
    ("GET", "/requests"): AUTH,
    ("GET", "/requests/{request_id}"): AUTH | PARAMS | {404},
    ("GET", "/requests/{request_id}/review"): AUTH | PARAMS | {404},
    ("POST", "/requests/{request_id}/approvals"): AUTH | BODY | {404, 409},
    ("POST", "/requests/{request_id}/release"): AUTH | BODY | {404, 409, 410},
    ("POST", "/requests/{request_id}/received"): AUTH | PARAMS | {404, 409},
    ("GET", "/audit"): AUTH | PARAMS,
    ("GET", "/audit/verify"): AUTH | PARAMS,
    ("GET", "/audit/checkpoint"): AUTH,
    ("GET", "/audit/proof"): AUTH | PARAMS | {404},
    ("GET", "/audit/consistency"): AUTH | PARAMS | {404},
    ("GET", "/retention/report"): AUTH,
    ("GET", "/cameras"): AUTH,
    ("POST", "/cameras"): AUTH | BODY | {409},
    ("GET", "/tokens"): AUTH,
    ("POST", "/tokens"): AUTH | BODY,
    ("POST", "/tokens/{token_id}/revoke"): AUTH | PARAMS | {404},
    ("GET", "/policy"): AUTH,
    ("GET", "/health"): set(),
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    from tests.conftest import ApiVault
    from vault.db import upgrade

    root = tmp_path_factory.mktemp("openapi")
    url = f"sqlite:///{root / 'v.db'}"
    upgrade(url)
    api = ApiVault(url, root)
    got = api.client.get("/openapi.json").json()
    api.client.close()
    api.ctx.engine.dispose()
    return got


def _operations(spec):
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_every_operation_declares_the_errors_it_can_answer(spec):
    ops = {(m, p): op for m, p, op in _operations(spec)}
    assert set(ops) == set(EXPECTED), "an operation was added or removed: say what it answers"
    for key, op in ops.items():
        errors = {int(code) for code in op["responses"] if int(code) >= 400}
        assert errors == EXPECTED[key], f"{key}: declares {sorted(errors)}"
        for code in errors:
            answer = op["responses"][str(code)]
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (key, code)
            assert len(answer["description"]) > 20, (key, code)  # says why, not "Error"


def test_every_field_is_described(spec):
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # every 422 is the one-line ErrorOut
    undescribed = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []


def test_declared_answers_are_given(tmp_path):
    """Spot checks that the schema's errors are what the API answers: the error shape, and
    503 in one line when the database is gone (not a 500 with the driver's message)."""
    from fastapi.testclient import TestClient

    from tests.conftest import ApiVault
    from vault.api import VaultContext, create_app
    from vault.db import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'v.db'}"
    upgrade(url)
    api = ApiVault(url, tmp_path)
    r = api.call("Det. Vance", "GET", "/requests/22222222-2222-4222-8222-222222222222")
    assert r.status_code == 404 and set(r.json()) == {"detail"}
    r = api.call("Det. Vance", "GET", "/requests/none-such")  # ids in paths are UUIDs
    assert r.status_code == 422 and set(r.json()) == {"detail"}
    r = api.call("Auditor", "GET", "/audit", params={"since": "2026-12-01T00:00"})  # no zone
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    gone = make_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'v.db'}")
    ctx = VaultContext(gone, api.keystore, api.ctx.policy, api.clock)
    with TestClient(create_app(ctx)) as client:
        r = client.get("/warrants", headers=api.h("Judge Ito"))
    assert r.status_code == 503, r.text
    assert r.json() == {"detail": "the vault's database is unavailable; try again later"}
    api.client.close()
    api.ctx.engine.dispose()


def test_links_lead_to_operations_and_their_parameters(spec):
    """The links the stateful fuzzer follows (vault/api/links.py) name operations of this
    schema and parameters those operations take, and every operation but /health is
    linked to or from, so that no operation lies outside the state machine."""
    by_id = {op["operationId"]: (m, p, op) for m, p, op in _operations(spec)}
    linked = set()
    for method, path, op in _operations(spec):
        for status, answer in op["responses"].items():
            for name, link in answer.get("links", {}).items():
                assert int(status) < 300, (method, path, status, name)  # from a success
                t_method, t_path, target = by_id[link["operationId"]]
                names = {p["name"] for p in target.get("parameters", [])}
                assert set(link.get("parameters", {})) <= names, (method, path, name)
                if "requestBody" in link:
                    assert "requestBody" in target, (method, path, name)
                assert len(link["description"]) > 5, (method, path, name)
                linked |= {(method, path), (t_method, t_path)}
    assert linked == set(EXPECTED) - {("GET", "/health")}
