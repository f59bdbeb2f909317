"""The console's guards over plain HTTP, on SQLite and PostgreSQL: each role reaches its own
pages and actions only (403 page, audit entry), forms without this session's CSRF token do
nothing, sessions end with their time or their token, and the headers a browser enforces
(CSP, HttpOnly, SameSite=Strict) are sent. The browser walk is tests/test_console_browser.py."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from vault.models import AuditEntry, Warrant

# A page of each role (GET) and an action of each role (POST with fields), the roles the
# console must admit there: those of the API endpoint behind it.
PAGES = {
    "/console/judge": {"judge"},
    "/console/investigator": {"investigator"},
    "/console/trustee": {"trustee"},
    "/console/auditor": {"auditor"},
    "/console/retention": {"auditor"},
    "/console/charts/age.svg": {"auditor"},
    "/console/cameras": {"admin", "auditor"},
    "/console/tokens": {"admin"},
}
ACTIONS = {
    "/console/judge/warrants": ({"judge"}, {"case_ref": "X"}),
    "/console/investigator/requests": ({"investigator"}, {"warrant_id": "x", "reason": "x"}),
    "/console/cameras": ({"admin"}, {"camera_id": "cam-9"}),
    "/console/tokens/nope/revoke": ({"admin"}, {}),
}
PEOPLE = ("judge", "investigator", "trustee", "auditor", "admin")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login(api, who: str):
    """A fresh client signed in with `who`'s token; -> (client, CSRF token of its session)."""
    from fastapi.testclient import TestClient

    c = TestClient(api.app)
    page = c.get("/console/login")
    r = c.post(
        "/console/login",
        data={"token": api.tokens[who], "csrf": csrf_of(page.text)},
        follow_redirects=True,
    )
    assert r.status_code == 200, r.text
    return c, csrf_of(r.text)


def entries(api, after: int = 0) -> list[AuditEntry]:
    with api.ctx.factory() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.id > after)))


def head(api) -> int:
    return max((e.id for e in entries(api)), default=0)


def test_each_role_reaches_its_own_pages_only(api):
    for role in PEOPLE:
        who = api.by_role[role]
        c, csrf = login(api, who)
        for path, allowed in PAGES.items():
            before = head(api)
            r = c.get(path, follow_redirects=False)
            if role in allowed:
                assert r.status_code == 200, (role, path, r.text[:300])
            else:
                assert r.status_code == 403, (role, path)
                assert "Not allowed" in r.text
                new = entries(api, before)
                assert [e.action for e in new] == ["access.denied"], (role, path)
                assert new[0].actor == f"{role}:{who}"
        for path, (allowed, fields) in ACTIONS.items():
            if role in allowed:
                continue
            before = head(api)
            r = c.post(path, data={**fields, "csrf": csrf}, follow_redirects=False)
            assert r.status_code == 403, (role, path, r.status_code)
            assert [e.action for e in entries(api, before)] == ["access.denied"]
    with api.ctx.factory() as s:
        assert s.scalars(select(Warrant)).first() is None  # nothing was issued on the way


def test_a_camera_token_and_a_bad_token_get_no_session(api):
    from fastapi.testclient import TestClient

    c = TestClient(api.app)
    for token, status in ((api.tokens["cam-1"], 403), ("kfe_not-a-token", 401)):
        page = c.get("/console/login")
        r = c.post("/console/login", data={"token": token, "csrf": csrf_of(page.text)})
        assert r.status_code == status
        assert "kfe_session" not in r.headers.get("set-cookie", "")
    assert "auth.refused" in api.audit_actions()
    assert (
        c.get("/console/judge", follow_redirects=False)
        .headers["location"]
        .startswith("/console/login")
    )


def test_forms_without_this_sessions_csrf_token_do_nothing(api):
    judge, csrf = login(api, "Judge Ito")
    other, other_csrf = login(api, "Judge Ito")  # a second session of the same judge
    assert csrf != other_csrf
    fields = {
        "case_ref": "CSRF-1",
        "legal_basis": "test",
        "cameras": "cam-1",
        "window_start": api.t0.strftime("%Y-%m-%dT%H:%M"),
        "window_end": (api.t0 + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "not_after": (api.t0 + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
    }
    for bad in ({}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": other_csrf}):
        before = head(api)
        r = judge.post("/console/judge/warrants", data={**fields, **bad})
        assert r.status_code == 403
        assert [e.action for e in entries(api, before)] == ["refused"]
    with api.ctx.factory() as s:
        assert s.scalars(select(Warrant)).first() is None
    # the login form too: a cross-site post signing the victim in as someone else
    from fastapi.testclient import TestClient

    fresh = TestClient(api.app)
    r = fresh.post("/console/login", data={"token": api.tokens["Judge Ito"], "csrf": "x"})
    assert r.status_code == 403 and "kfe_session" not in r.headers.get("set-cookie", "")
    # with the right token, the same form works
    r = judge.post("/console/judge/warrants", data={**fields, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and "/console/judge/warrants/" in r.headers["location"]


def test_sessions_end_with_their_time_or_their_token(api):
    judge, _ = login(api, "Judge Ito")
    assert judge.get("/console/judge").status_code == 200
    api.clock.advance(minutes=16)
    r = judge.get("/console/judge", follow_redirects=False)
    assert r.status_code == 303 and "expired" in r.headers["location"]

    auditor, _ = login(api, "Auditor")
    assert auditor.get("/console/auditor").status_code == 200
    from vault import tokens

    assert tokens.revoke(api.ctx.factory, api.token_ids["Auditor"], api.clock())
    r = auditor.get("/console/auditor", follow_redirects=False)
    assert r.status_code == 303
    denied = entries(api)[-1]
    assert denied.action == "auth.refused" and api.token_ids["Auditor"] in denied.detail

    # signing out drops the cookie and is recorded
    admin, csrf = login(api, "Admin")
    r = admin.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and 'kfe_session=""' in r.headers["set-cookie"]
    assert api.audit_actions()[-1] == "console.logout"
    assert admin.get("/console/tokens", follow_redirects=False).status_code == 303

    # a cookie edited or made up is no session
    forged = login(api, "Admin")[0]
    cookie = forged.cookies.get("kfe_session")
    forged.cookies.set("kfe_session", cookie[:-4] + "AAAA", path="/console")
    assert forged.get("/console/tokens", follow_redirects=False).status_code == 303


def test_headers_and_cookie_flags(api):
    from fastapi.testclient import TestClient

    c = TestClient(api.app)
    page = c.get("/console/login")
    csp = page.headers["content-security-policy"]
    for part in ("default-src 'none'", "form-action 'self'", "frame-ancestors 'none'"):
        assert part in csp
    assert "script-src" not in csp and "unsafe" not in csp  # no script runs at all
    assert page.headers["x-frame-options"] == "DENY"
    r = c.post(
        "/console/login",
        data={"token": api.tokens["Admin"], "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Max-Age=900" in cookie
    assert api.tokens["Admin"] not in cookie  # the token itself never reaches the browser
    # forms are taken on the console's paths only: the API still takes JSON alone
    r = c.post("/warrants", data={"case_ref": "x"}, headers=api.h("Judge Ito"))
    assert r.status_code == 415


def test_pages_escape_what_people_typed(api):
    """A case reference with markup is shown as text, never as a tag."""
    judge, csrf = login(api, "Judge Ito")
    fields = {
        "case_ref": '<script>alert(1)</script><img src=x onerror="alert(2)">',
        "legal_basis": "<b>bold</b>",
        "cameras": "cam-1",
        "window_start": api.t0.strftime("%Y-%m-%dT%H:%M"),
        "window_end": (api.t0 + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "not_after": (api.t0 + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "csrf": csrf,
    }
    assert judge.post("/console/judge/warrants", data=fields).status_code == 200
    html = judge.get("/console/judge").text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html


def test_tokens_page_shows_each_tokens_last_use(api):
    from vault.models import ApiToken

    def last_used(who: str):
        with api.ctx.factory() as s:
            return s.get(ApiToken, api.token_ids[who]).last_used_at

    assert last_used("Judge Ito") is None
    assert api.call("Judge Ito", "GET", "/warrants").status_code == 200
    first = last_used("Judge Ito")
    assert first is not None
    api.clock.advance(seconds=30)  # within the step: no write
    api.call("Judge Ito", "GET", "/warrants")
    assert last_used("Judge Ito") == first
    api.clock.advance(minutes=2)
    api.call("Judge Ito", "GET", "/warrants")
    assert last_used("Judge Ito") > first

    admin, _ = login(api, "Admin")
    html = admin.get("/console/tokens").text
    row = {name: html.split(name, 1)[1].split("</tr>", 1)[0] for name in ("Judge Ito", "Trustee C")}
    assert api.clock().strftime("%Y-%m-%d %H:%M") in row["Judge Ito"]
    assert "never" in row["Trustee C"]


def test_bad_input_gets_a_one_line_page(api):
    auditor, _ = login(api, "Auditor")
    r = auditor.get("/console/auditor", params={"since": "yesterday"})
    assert r.status_code == 422 and "YYYY-MM-DD" in r.text
    r = auditor.get("/console/auditor", params={"since": "2026-01-01T00:00-05:00"})
    assert r.status_code == 200
    judge, csrf = login(api, "Judge Ito")
    r = judge.post(
        "/console/judge/warrants",
        data={
            "csrf": csrf,
            "case_ref": "C",
            "legal_basis": "b",
            "cameras": "cam-1",
            "window_start": "soon",
            "window_end": "later",
            "not_after": "never",
        },
    )
    assert r.status_code == 422 and "window_start" in r.text and "Traceback" not in r.text
    r = judge.get("/console/judge/warrants/no-such-warrant")
    assert r.status_code == 404 and "no warrant" in r.text
