"""Hostile input that is not a matter of roles: numbers JSON cannot carry (NaN, infinities,
1e400) and request bodies that never arrive."""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from vault.models import SealedRecordRow, Warrant

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


def _strict_json(text: str):
    """The answer parsed as strict JSON: a NaN or an infinity in it fails the test."""

    def refuse(token):
        raise AssertionError(f"non-finite number {token} in the answer: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


def _post_raw(api, who: str, path: str, body: dict, field_path: list, raw: str):
    """POST `body` with the value at `field_path` replaced by the raw JSON token `raw`."""
    target = body
    for key in field_path[:-1]:
        target = target[key]
    target[field_path[-1]] = "__RAW__"
    text = json.dumps(body).replace('"__RAW__"', raw)
    headers = {**api.h(who), "Content-Type": "application/json"}
    return api.client.post(path, content=text, headers=headers)


def _assert_one_line_422(r, where: str, raw: str):
    assert r.status_code == 422, (where, r.status_code, r.text)
    detail = _strict_json(r.text)["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 1000, detail
    assert where in detail, detail
    # the input is never echoed (Pydantic's message may say "NaN values not permitted")
    assert raw == "NaN" or raw not in detail, detail
    assert "inf" not in detail.replace("finite", ""), detail


@pytest.mark.parametrize("raw", NON_FINITE)
def test_non_finite_numbers_in_a_record_are_422_with_one_line(api, raw):
    rec = api.seal("cam-1", api.t0 + timedelta(minutes=5))[0]
    for field in ("quality", "track_id"):
        r = _post_raw(api, "cam-1", "/ingest", {"records": [dict(rec)]}, ["records", 0, field], raw)
        _assert_one_line_422(r, f"body.records.0.{field}", raw)
    # where a string or a list is expected, too
    r = _post_raw(api, "cam-1", "/ingest", {"records": [dict(rec)]}, ["records", 0, "nonce"], raw)
    _assert_one_line_422(r, "body.records.0.nonce", raw)
    r = _post_raw(api, "cam-1", "/ingest", {"records": []}, ["records"], raw)
    _assert_one_line_422(r, "body.records", raw)
    with api.ctx.factory() as s:
        assert s.scalar(select(func.count()).select_from(SealedRecordRow)) == 0


@pytest.mark.parametrize("raw", NON_FINITE)
def test_non_finite_numbers_in_a_warrant_are_422_with_one_line(api, raw):
    t = api.clock()
    body = {
        "case_ref": "CASE-1",
        "legal_basis": "Art. 100a StPO",
        "cameras": ["cam-1"],
        "window_start": t.isoformat(),
        "window_end": (t + timedelta(hours=1)).isoformat(),
        "not_before": t.isoformat(),
        "not_after": (t + timedelta(days=7)).isoformat(),
        "max_records": 1,
    }
    for field in ("max_records", "window_start"):
        r = _post_raw(api, "Judge Ito", "/warrants", dict(body), [field], raw)
        _assert_one_line_422(r, f"body.{field}", raw)
    with api.ctx.factory() as s:
        assert s.scalar(select(func.count()).select_from(Warrant)) == 0


def test_a_validation_detail_names_few_errors_and_no_input(api):
    """Many errors: the first few are named, the rest counted; field names are bounded."""
    body = {"records": [{"x" * 500 + "\n" + str(i): 1e308} for i in range(10)]}
    r = api.ingest("cam-1", body["records"])
    assert r.status_code == 422
    detail = _strict_json(r.text)["detail"]
    assert "\n" not in detail and "more" in detail and len(detail) < 1000
    assert "1e+308" not in detail and "1e308" not in detail


UNREADABLE = {
    "not UTF-8": b'{"reason": "\xff\xfe"}',
    "nested too deep": b"[" * 100_000,
}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("body", list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_a_json_body_that_cannot_be_parsed_is_a_declared_422(api, body):
    """Found by the stateful fuzzer: a body JSON's parser cannot read for another reason
    than its syntax (bytes that are not UTF-8, nesting deeper than the parser recurses) was
    FastAPI's 400, which no operation declares; it is invalid input like any other: 422, one
    line, nothing echoed, nothing done."""
    headers = {**api.h("Judge Ito"), "Content-Type": "application/json"}
    for path in ("/warrants", "/warrants/11111111-1111-4111-8111-111111111111/revoke"):
        r = api.client.post(path, content=body, headers=headers)
        assert r.status_code == 422, (path, r.status_code, r.text)
        detail = _strict_json(r.text)["detail"]
        assert detail.startswith("body: ") and "\n" not in detail and len(detail) < 200, detail
    with api.ctx.factory() as s:
        assert s.scalar(select(func.count()).select_from(Warrant)) == 0


BY_ID = [  # who may call it, and a valid body where it takes one
    ("Judge Ito", "GET", "/warrants/{}", None),
    ("Judge Ito", "POST", "/warrants/{}/revoke", {"reason": "r"}),
    ("Det. Vance", "GET", "/warrants/{}/records", None),
    ("Det. Vance", "GET", "/requests/{}", None),
    ("Trustee A", "GET", "/requests/{}/review", None),
    ("Trustee A", "POST", "/requests/{}/approvals", {"request_digest": "0" * 64, "shares": {}}),
    ("Det. Vance", "POST", "/requests/{}/release", {"fetch_secret": "s"}),
    ("Admin", "POST", "/tokens/{}/revoke", None),
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_id_in_a_path_is_a_uuid_or_422_and_never_echoed(api):
    """Found reading the stateful fuzzer's answers: an id in a path was any text, and the 404
    named it ("no request <the caller's text>"), control characters and line breaks too, in
    the answer and in the audit trail's refusal entry. The ids are UUIDs: anything else is
    a 422 (declared by every such operation) that does not repeat it, and nothing is
    audited under it."""
    from vault.models import AuditEntry

    hostile = "x%0A%0Cforged%20entry"  # "x\n\fforged entry"
    for who, method, template, body in BY_ID:
        kw = {"json": body} if body is not None else {}
        r = api.call(who, method, template.format(hostile), **kw)
        assert r.status_code == 422, (template, r.status_code, r.text)
        detail = r.json()["detail"]
        assert "forged" not in detail and detail.isprintable(), (template, detail)
        # a well-formed id that names nothing is still a 404
        unknown = template.format("11111111-1111-4111-8111-111111111111")
        assert api.call(who, method, unknown, **kw).status_code == 404, unknown
    with api.ctx.factory() as s:
        trail = " ".join(s.scalars(select(AuditEntry.detail)))
    assert "forged" not in trail


# --- bodies that never arrive ----------------------------------------------------------------


def _raw_post(port: int, headers: dict, first: bytes) -> socket.socket:
    """A POST /ingest over a raw socket: the headers and `first` bytes of the body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + first)
    return sock


def _read_all(sock: socket.socket, until: float) -> bytes:
    """What the server sends until it closes the connection (or `until`, monotonic)."""
    got = b""
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    return got


@pytest.fixture
def live(api):
    from conftest import LiveServer

    api.ctx.body_timeout_s = 0.5
    server = LiveServer(api.app)
    yield api, server
    server.stop()


def test_a_stalled_body_is_cut_with_408_and_the_server_goes_on(live):
    api, server = live
    headers = {
        **api.h("cam-1"),
        "Content-Type": "application/json",
        "Content-Length": "1000",  # promised, never sent
    }
    t = time.monotonic()
    sock = _raw_post(server.port, headers, b'{"records": [')
    try:
        got = _read_all(sock, t + api.ctx.body_timeout_s + 5)
    finally:
        sock.close()
    took = time.monotonic() - t
    assert took < api.ctx.body_timeout_s + 5, took
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert "stalled" in _strict_json(body.decode())["detail"]
    # the server still answers, and nothing was stored
    assert httpx.get(f"{server.url}/health", timeout=5).json() == {"status": "ok"}
    with api.ctx.factory() as s:
        assert s.scalar(select(func.count()).select_from(SealedRecordRow)) == 0


def test_a_slow_body_that_keeps_coming_is_not_cut(live):
    """The timeout is for a stall, not for the whole body: a body whose pieces come more
    often than the timeout is read to the end and handled."""
    api, server = live
    rec = api.seal("cam-1", api.t0 + timedelta(minutes=5))[0]
    body = json.dumps({"records": [rec]}).encode()
    headers = {
        **api.h("cam-1"),
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Connection": "close",
    }
    pieces = [body[i : i + len(body) // 4 + 1] for i in range(0, len(body), len(body) // 4 + 1)]
    sock = _raw_post(server.port, headers, pieces[0])
    try:
        for piece in pieces[1:]:
            time.sleep(api.ctx.body_timeout_s * 0.4)
            sock.sendall(piece)
        got = _read_all(sock, time.monotonic() + 10)
    finally:
        sock.close()
    assert got.startswith(b"HTTP/1.1 200"), got[:300]
    with api.ctx.factory() as s:
        assert s.scalar(select(func.count()).select_from(SealedRecordRow)) == 1


def test_a_nul_character_is_never_a_server_error(api):
    """Found by the stateful API test on PostgreSQL (`GET /audit?actor=N...%00`): a NUL in a
    text value reached the database, which refuses it in text, and the answer was a 500.
    In a query parameter or in a JSON body, on both engines, it is now at most a 422, one
    line, and nothing is stored from the request."""
    r = api.call("Auditor", "GET", "/audit", params={"actor": "N\x00", "action": "x"})
    assert r.status_code in (200, 422) and r.status_code < 500, r.text
    if r.status_code == 422:
        assert "\n" not in r.json()["detail"] and "\x00" not in r.json()["detail"]
    with api.ctx.factory() as s:
        before = s.scalar(select(func.count()).select_from(Warrant))
    w = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1), case_ref="K-\x00-1")
    assert w.status_code in (201, 422), w.text
    with api.ctx.factory() as s:
        after = s.scalar(select(func.count()).select_from(Warrant))
    assert after == before + (w.status_code == 201)
    if api.ctx.engine.dialect.name == "postgresql":  # the engine that refuses it
        assert r.status_code == 422 and w.status_code == 422
