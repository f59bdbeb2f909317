"""Every endpoint against every role: what a role may not do is refused (403) and audited;
unknown, revoked or missing tokens are refused (401) and audited."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from vault import tokens
from vault.models import AuditEntry

W, R, T = (
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333",
)
READ_WARRANTS = {"judge", "investigator", "trustee", "auditor"}
READ_REQUESTS = {"investigator", "trustee", "auditor"}
# What the issue allows, written out here independently of the routers.
MATRIX = [
    ("POST", "/ingest", {"camera"}),
    ("GET", "/keyring", {"camera"}),
    ("POST", "/warrants", {"judge"}),
    ("GET", "/warrants", READ_WARRANTS),
    ("GET", "/warrants/{warrant_id}", READ_WARRANTS),
    ("POST", "/warrants/{warrant_id}/revoke", {"judge"}),
    ("GET", "/warrants/{warrant_id}/records", {"investigator"}),
    ("POST", "/requests", {"investigator"}),
    ("GET", "/requests", READ_REQUESTS),
    ("GET", "/requests/{request_id}", READ_REQUESTS),
    ("GET", "/requests/{request_id}/review", {"trustee"}),
    ("POST", "/requests/{request_id}/approvals", {"trustee"}),
    ("POST", "/requests/{request_id}/release", {"investigator"}),
    ("GET", "/audit", {"auditor"}),
    ("GET", "/audit/verify", {"auditor"}),
    ("GET", "/audit/checkpoint", {"auditor", "investigator", "judge", "trustee"}),
    ("GET", "/audit/proof", {"auditor", "investigator"}),
    ("GET", "/audit/consistency", {"auditor"}),
    ("GET", "/retention/report", {"auditor"}),
    ("GET", "/cameras", {"admin", "auditor"}),
    ("POST", "/cameras", {"admin"}),
    ("GET", "/tokens", {"admin"}),
    ("POST", "/tokens", {"admin"}),
    ("POST", "/tokens/{token_id}/revoke", {"admin"}),
    ("GET", "/policy", {"admin", "auditor"}),
]
PUBLIC = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _path(template: str) -> str:
    return template.format(warrant_id=W, request_id=R, token_id=T)


def _entries(api) -> list[AuditEntry]:
    with api.ctx.factory() as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_the_matrix_covers_every_route(api):
    routes = {
        (m.upper(), path)
        for path, ops in api.app.openapi()["paths"].items()
        for m in ops
        if path not in PUBLIC
    }
    assert routes == {(m, p) for m, p, _ in MATRIX}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("method,template,allowed", MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_role_endpoint_matrix(api, method, template, allowed):
    for role in api.ROLES:
        who = api.by_role[role]
        before = len(_entries(api))
        kw = {"json": {}} if method == "POST" else {}
        r = api.call(who, method, _path(template), **kw)
        if role in allowed:
            assert r.status_code not in (401, 403), (role, r.status_code, r.text)
            continue
        assert r.status_code == 403, (role, r.status_code, r.text)
        new = _entries(api)[before:]
        assert [e.action for e in new] == ["access.denied"], (role, template)
        detail = json.loads(new[0].detail)
        assert detail["endpoint"] == f"{method} {template}" and detail["role"] == role
        assert new[0].actor == f"{role}:{who}"


def test_missing_unknown_and_revoked_tokens_are_401_and_audited(api):
    tokens.revoke(api.ctx.factory, api.token_ids["Judge Ito"], api.t0)
    cases = [
        {},
        {"Authorization": "Bearer kfe_not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        api.h("Judge Ito"),
    ]
    for method, template, _ in MATRIX:
        for headers in cases:
            before = len(_entries(api))
            kw = {"json": {}} if method == "POST" else {}
            r = api.client.request(method, _path(template), headers=headers, **kw)
            assert r.status_code == 401, (template, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            new = _entries(api)[before:]
            assert [e.action for e in new] == ["auth.refused"]
            assert "kfe_" not in new[0].detail  # no token material in the trail


def test_an_admin_can_manage_but_never_open(api):
    for role in ("judge", "trustee", "auditor", "investigator", "admin"):  # separation of duties
        r = api.call("Admin", "POST", "/tokens", json={"role": role, "name": "Self-made"})
        assert r.status_code == 403, (role, r.text)
    made = api.call("Admin", "POST", "/tokens", json={"role": "camera", "name": "cam-9"})
    assert made.status_code == 201 and made.json()["token"].startswith("kfe_")
    assert "Self-made" not in [t["name"] for t in api.call("Admin", "GET", "/tokens").json()]
    assert "token" not in api.call("Admin", "GET", "/tokens").json()[0]
    for method, template in [
        ("GET", "/warrants/{warrant_id}/records"),
        ("POST", "/requests/{request_id}/approvals"),
        ("POST", "/requests/{request_id}/release"),
        ("POST", "/requests"),
    ]:
        assert api.call("Admin", method, _path(template), json={}).status_code == 403
