"""Every endpoint against every role: what a role may not do is refused (403) and audited;
unknown, revoked or missing tokens are refused (401) and audited."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from vault import tokens
from vault.models import ApiToken, AuditEntry

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
    ("POST", "/requests/{request_id}/received", {"investigator"}),
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
        if role in allowed:  # past the role check, and handled: never a server error
            assert r.status_code not in (401, 403), (role, r.status_code, r.text)
            assert r.status_code < 500, (role, r.status_code, r.text)
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
    made = api.call("Admin", "POST", "/tokens", json={"role": "camera", "name": "cam-3"})
    assert made.status_code == 201 and made.json()["token"].startswith("kfe_")
    expires = datetime.fromisoformat(made.json()["expires_at"])
    assert expires == api.t0 + timedelta(days=365)  # a camera's default lifetime
    cam3 = {"Authorization": f"Bearer {made.json()['token']}"}
    assert api.client.post("/ingest", json={"records": []}, headers=cam3).status_code == 422
    listed = api.call("Admin", "GET", "/tokens").json()
    assert "token" not in listed[0] and all("expires_at" in t for t in listed)
    for method, template in [
        ("GET", "/warrants/{warrant_id}/records"),
        ("POST", "/requests/{request_id}/approvals"),
        ("POST", "/requests/{request_id}/release"),
        ("POST", "/requests"),
    ]:
        assert api.call("Admin", method, _path(template), json={}).status_code == 403


def _token_count(api) -> int:
    with api.ctx.factory() as s:
        return s.scalar(select(func.count()).select_from(ApiToken))


@pytest.mark.parametrize("role", ["judge", "trustee", "auditor", "investigator", "admin"])
def test_an_admin_cannot_make_anything_but_camera_tokens(api, role):
    """Separation of duties: the admin who runs the vault cannot give themselves (or anyone)
    a role that issues, approves, opens or audits."""
    before, entries = _token_count(api), len(_entries(api))
    body = {"role": role, "name": "Admin's friend"}
    if role == "trustee":
        body["name"] = "Trustee D"
    r = api.call("Admin", "POST", "/tokens", json=body)
    assert r.status_code == 403 and "escrow authority" in r.json()["detail"], r.text
    assert _token_count(api) == before  # nothing created
    new = _entries(api)[entries:]
    assert [e.action for e in new] == ["refused"] and new[0].actor == "admin:Admin"
    assert json.loads(new[0].detail)["status"] == 403


def _insert_token(api, role: str, name: str, sign_with=None, tamper=None, **cols) -> str:
    """The attack: a row written straight into the database by whoever can (an admin with a
    connection), with the hash of a token they chose, signed with `sign_with` if given over
    the canonical encoding, then edited by `tamper`; -> the token."""
    import hashlib
    import secrets
    import uuid

    tok = "kfe_" + secrets.token_urlsafe(32)
    row = ApiToken(
        id=str(uuid.uuid4()),
        name=name,
        role=role,
        token_sha256=hashlib.sha256(tok.encode()).hexdigest(),
        created=api.t0,
        expires_at=api.t0 + timedelta(days=90),
        trustee_index=1 if role == "trustee" else None,
    )
    for k, v in cols.items():
        setattr(row, k, v)
    if sign_with is not None:
        row.signature = sign_with.sign(
            tokens.signed_bytes(
                row.id, row.role, row.name, row.trustee_index, row.expires_at, row.token_sha256
            )
        )
    if tamper is not None:
        tamper(row)
    with api.ctx.factory.begin() as s:
        s.add(row)
    return tok


def _refused_401(api, tok: str, method: str, path: str, why: str, **kw) -> None:
    before = len(_entries(api))
    r = api.client.request(method, path, headers={"Authorization": f"Bearer {tok}"}, **kw)
    assert r.status_code == 401 and r.json()["detail"] == why, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    new = _entries(api)[before:]
    assert [e.action for e in new] == ["auth.refused"] and new[0].actor == "anonymous"
    detail = json.loads(new[0].detail)
    assert detail["why"] == why and "token" in detail and "kfe_" not in new[0].detail


WARRANT = {
    "case_ref": "FORGED-1",
    "legal_basis": "none",
    "cameras": ["cam-1"],
    "window_start": "2026-01-01T00:00:00+00:00",
    "window_end": "2026-01-02T00:00:00+00:00",
    "not_before": "2026-01-01T00:00:00+00:00",
    "not_after": "2026-01-08T00:00:00+00:00",
}
NOT_ISSUED = "token not issued by the escrow authority"


@pytest.mark.parametrize(
    "role,method,path",
    [
        ("judge", "POST", "/warrants"),
        ("trustee", "GET", "/requests"),
        ("auditor", "GET", "/audit"),
    ],
)
def test_a_privileged_token_written_into_the_database_is_401(api, role, method, path):
    """Whoever can write the database cannot mint a judge, a trustee or an auditor: without
    the escrow authority's signature, with another key's, or with the authority's signature
    over other fields, the token is refused and the attempt audited."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from vault.models import Warrant

    kw = {"json": WARRANT} if method == "POST" else {}
    mallory = Ed25519PrivateKey.generate()  # a key of the attacker's own
    attempts = [
        _insert_token(api, role, "Mallory"),  # no signature
        _insert_token(api, role, "Mallory", signature=b"\0" * 64),  # a junk one
        _insert_token(api, role, "Mallory", sign_with=mallory),  # another key's
    ]

    # the authority's genuine signature does not survive an edit of what it covers
    def edit(**changes):
        return lambda row: [setattr(row, k, v) for k, v in changes.items()]

    for tamper in (
        edit(name="Judge Ito"),
        edit(expires_at=api.t0 + timedelta(days=3650)),
        edit(role="auditor" if role != "auditor" else "judge"),
        edit(trustee_index=2 if role == "trustee" else 1),
    ):
        attempts.append(_insert_token(api, role, "Someone", api.authority, tamper))
    # nor a genuine token's signature copied onto a row with a hash of one's own
    with api.ctx.factory() as s:
        real = s.get(ApiToken, api.token_ids[api.by_role[role]])
        copied = {k: getattr(real, k) for k in ("name", "expires_at", "trustee_index", "signature")}
    attempts.append(_insert_token(api, role, **copied))
    for tok in attempts:
        _refused_401(api, tok, method, path, NOT_ISSUED, **kw)
    with api.ctx.factory() as s:
        assert s.scalar(select(func.count()).select_from(Warrant)) == 0
    # the authority's own token of that role works
    assert api.call(api.by_role[role], method, path, **kw).status_code not in (401, 403)


def test_without_an_authority_key_no_privileged_token_is_honoured(api):
    api.ctx.authority_key = None
    for who in ("Judge Ito", "Trustee A", "Auditor"):
        r = api.call(who, "GET", "/warrants")
        assert r.status_code == 401 and r.json()["detail"] == NOT_ISSUED
    assert api.call("Det. Vance", "GET", "/warrants").status_code == 200


def test_an_expired_token_is_401_and_audited(api):
    _, short = api.make_token("judge", "Judge Short", expires=timedelta(hours=1))
    assert (
        api.client.get("/warrants", headers={"Authorization": f"Bearer {short}"}).status_code == 200
    )
    api.clock.advance(hours=1)
    _refused_401(api, short, "GET", "/warrants", "token expired")
    # the default lifetimes: a camera's a year, anyone else's 90 days
    api.clock.advance(days=90)
    _refused_401(api, api.tokens["Det. Vance"], "GET", "/warrants", "token expired")
    _refused_401(api, api.tokens["Judge Ito"], "GET", "/warrants", "token expired")
    assert api.ingest("cam-1", []).status_code == 422  # past the role check: still valid
    api.clock.advance(days=365)
    _refused_401(api, api.tokens["cam-1"], "POST", "/ingest", "token expired", json={})
