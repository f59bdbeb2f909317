"""The console in a real browser: Playwright drives the system's Chromium (never one it
downloads) against `escrow serve`'s app under uvicorn, on a vault with real sealed records.
Each role signs in and does its job: the judge issues and revokes a warrant, the investigator
lists the records, asks, follows the approvals and fetches the zip with the secret typed in,
each trustee reviews the case and compares the digest (the approval itself runs where the
share is, as `escrow request approve` posts it), the auditor filters the trail and reads an
entry, retention and cameras are charted, the admin registers a camera. Every page is
screenshotted to $ESCROW_SCREENSHOTS (else a temporary folder), and no response but the
investigator's download carries a byte of a crop."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import IN_CI, ApiVault, LiveServer

CHROMIUM = Path("/usr/lib/chromium/chromium")
# What the console may send a browser; a JPEG or anything else is a leak of a crop.
PAGE_TYPES = ("text/html", "text/css", "image/svg+xml")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        msg = f"no system Chromium at {CHROMIUM} (scripts/setup.sh installs it)"
        if IN_CI:
            pytest.fail(msg + " (CI=true: browser tests may not skip)")
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = Path(os.environ.get("ESCROW_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def vault(tmp_path):
    from vault.db import upgrade

    url = f"sqlite:///{tmp_path / 'vault.db'}"
    upgrade(url, "head")
    v = ApiVault(url, tmp_path)
    server = LiveServer(v.app)
    v.url = server.url
    yield v
    server.stop()
    v.ctx.engine.dispose()


class Watch:
    """Every response a browser context receives: its type, and whether it holds a crop."""

    def __init__(self, crops: list[bytes]):
        self.needles = [c for crop in crops for c in (crop, base64.b64encode(crop)[:64])]
        self.seen: list[tuple[str, str, bool]] = []

    def __call__(self, response) -> None:
        ctype = response.headers.get("content-type", "").split(";")[0]
        try:
            body = response.body()
        except Exception:  # a redirect has no body to read
            body = b""
        self.seen.append((response.url, ctype, any(n in body for n in self.needles)))


def sign_in(browser, vault, who: str, watch: Watch):
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    ctx.on("response", watch)
    page = ctx.new_page()
    page.goto(vault.url + "/")
    page.fill("input[name=token]", vault.tokens[who])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def shot(page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def utc_input(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M")


def test_each_role_does_its_job_in_the_browser(browser, vault, shots):
    t0 = vault.t0
    vault.clock.advance(hours=3)  # the cameras deliver what they saw in the last hours
    recs, crops = [], {}
    for cam, times in (("cam-1", (10, 17, 24, 31)), ("cam-2", (10, 17, 120, 130))):
        for minutes in times:
            rec, crop = vault.seal(cam, t0 + timedelta(minutes=minutes), track=len(recs) + 1)
            recs.append(rec)
            crops[rec["record_id"]] = crop
        assert vault.ingest(cam, [r for r in recs if r["camera_id"] == cam]).status_code == 200
    watch = Watch(list(crops.values()))

    # the sign-in page
    anon = browser.new_context()
    anon.on("response", watch)
    p = anon.new_page()
    p.goto(vault.url + "/")
    assert p.url.endswith("/console/login")
    shot(p, shots, "00-login")
    anon.close()

    # judge: issue a warrant over cam-1 and cam-2's first hour, see the timeline
    judge = sign_in(browser, vault, "Judge Ito", watch)
    assert judge.url.endswith("/console/judge")
    shot(judge, shots, "10-judge-warrants")
    judge.fill("input[name=case_ref]", "CASE-2026-17")
    judge.fill("textarea[name=legal_basis]", "Art. 100a StPO, robbery at the arcade")
    judge.fill("input[name=cameras]", "cam-1, cam-2")
    judge.fill("input[name=window_start]", utc_input(t0))
    judge.fill("input[name=window_end]", utc_input(t0 + timedelta(hours=1)))
    judge.fill("input[name=not_after]", utc_input(t0 + timedelta(days=7)))
    judge.click("form[action='/console/judge/warrants'] button")
    judge.wait_for_url("**/console/judge/warrants/*")
    wid = judge.url.rsplit("/", 1)[1]
    assert "CASE-2026-17" in judge.inner_text("h1") and "active" in judge.inner_text("h1")
    assert "6 (held" in judge.content()  # all six records in scope, on hold
    timeline = judge.locator("figure img")
    assert timeline.evaluate("img => img.complete && img.naturalWidth > 0")
    shot(judge, shots, "11-judge-warrant")

    # investigator: the records (metadata), a request for three of them
    inv = sign_in(browser, vault, "Det. Vance", watch)
    shot(inv, shots, "20-investigator")
    inv.click(f"a[href='/console/investigator/warrants/{wid}']")
    inv.wait_for_load_state()
    assert inv.locator("input[name=record]").count() == 6
    shot(inv, shots, "21-investigator-records")
    want = [r["record_id"] for r in recs[:2]] + [recs[4]["record_id"]]
    for rid in want:
        inv.check(f"input[name=record][value='{rid}']")
    inv.fill("textarea[name=reason]", "suspect seen at 14:02 near the entrance")
    inv.click("form[action='/console/investigator/requests'] button")
    inv.wait_for_load_state()
    secret = inv.inner_text("#fetch-secret").strip()
    assert secret
    shot(inv, shots, "22-investigator-request-made")
    inv.click("text=Follow its approvals")
    inv.wait_for_load_state()
    req_id = inv.url.rsplit("/", 1)[1]
    assert "0 of 2" in inv.content()
    assert secret not in inv.content()  # shown once, never again
    shot(inv, shots, "23-investigator-waiting")

    # trustees: the queue with case, basis, reason, requester; the command and the digest
    with vault.ctx.factory() as s:
        from vault import openings
        from vault.models import OpeningRequest

        digest = openings.digest(s.get(OpeningRequest, req_id))
    for n, who in enumerate(("Trustee A", "Trustee B")):
        tr = sign_in(browser, vault, who, watch)
        queue = tr.content()
        for text in (
            "CASE-2026-17",
            "robbery at the arcade",
            "suspect seen at 14:02",
            "Det. Vance",
        ):
            assert text in queue, text
        if n == 0:
            shot(tr, shots, "30-trustee-queue")
        tr.click(f"a[href='/console/trustee/requests/{req_id}']")
        tr.wait_for_load_state()
        command = tr.inner_text("pre.command")
        assert f"escrow request approve {req_id}" in command and f"--digest {digest}" in command
        assert tr.inner_text("code.digest") == digest
        assert tr.locator("form").count() == 1  # sign-out only: no share is typed in here
        if n == 0:
            shot(tr, shots, "31-trustee-review")
        # on the trustee's own machine: what `escrow request approve` posts
        assert vault.approve(who, req_id).status_code == 200
        tr.reload()
        assert "You have approved" in tr.content()
        tr.context.close()

    # investigator: approved; a wrong secret is refused, the right one gives the zip once
    inv.reload()
    assert "2 of 2" in inv.content()
    shot(inv, shots, "24-investigator-approved")
    inv.fill("input[name=fetch_secret]", "not-the-secret")
    inv.click("form[action$='/fetch'] button")
    inv.wait_for_load_state()
    assert "Refused" in inv.inner_text("h1")
    shot(inv, shots, "25-investigator-wrong-secret")
    inv.goto(f"{vault.url}/console/investigator/requests/{req_id}")
    inv.fill("input[name=fetch_secret]", secret)
    with inv.expect_download() as dl:
        inv.click("form[action$='/fetch'] button")
    z = zipfile.ZipFile(io.BytesIO(Path(dl.value.path()).read_bytes()))
    for rid in want:
        assert z.read(f"{rid}.jpg") == crops[rid]
    released = json.loads(z.read("release.json"))
    assert sorted(r["record_id"] for r in released["released"]) == sorted(want)
    inv.goto(f"{vault.url}/console/investigator/requests/{req_id}")
    assert "released" in inv.inner_text("h1")
    shot(inv, shots, "26-investigator-released")
    # a download that did not arrive: the same zip again, until the receipt is confirmed
    inv.fill("input[name=fetch_secret]", secret)
    with inv.expect_download() as dl2:
        inv.click("form[action$='/fetch'] button")
    again = zipfile.ZipFile(io.BytesIO(Path(dl2.value.path()).read_bytes()))
    assert all(again.read(f"{rid}.jpg") == crops[rid] for rid in want)
    inv.click("#received")
    inv.wait_for_load_state()
    assert "released" in inv.inner_text("h1") and inv.locator("#received").count() == 0
    assert inv.locator("input[name=fetch_secret]").count() == 0

    # judge: revoke
    judge.reload()
    judge.fill("input[name=reason]", "case closed")
    judge.click("form[action$='/revoke'] button")
    judge.wait_for_load_state()
    assert "revoked" in judge.inner_text("h1")
    shot(judge, shots, "12-judge-revoked")

    # auditor: the trail, filtered; an entry's detail; retention charts
    aud = sign_in(browser, vault, "Auditor", watch)
    assert "Intact" in aud.content()
    shot(aud, shots, "40-auditor-trail")
    aud.select_option("select[name=action]", "request.release")
    aud.click("form.filters button")
    aud.wait_for_load_state()
    rows = aud.locator("table.trail tbody tr")
    assert rows.count() == 1 and "request.release" in rows.first.inner_text()
    aud.fill("input[name=actor]", "Trustee")
    aud.select_option("select[name=action]", "")
    aud.click("form.filters button")
    aud.wait_for_load_state()
    assert aud.locator("table.trail tbody tr").count() >= 2
    assert all(
        "trustee:" in t
        for t in aud.locator("table.trail tbody tr td:nth-child(3)").all_inner_texts()
    )
    shot(aud, shots, "41-auditor-filtered")
    aud.goto(f"{vault.url}/console/auditor?record={want[0]}")
    assert aud.locator("table.trail tbody tr").count() >= 2  # the request and the release
    aud.click("table.trail tbody tr:first-child a")
    aud.wait_for_load_state()
    assert "Audit entry" in aud.inner_text("h1") and want[0] in aud.inner_text("pre")
    shot(aud, shots, "42-auditor-entry")
    aud.goto(vault.url + "/console/retention")
    for img in aud.locator(".charts img").all():
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    assert "CASE-2026-17" in aud.content()  # the hold and why
    shot(aud, shots, "43-retention")
    aud.goto(vault.url + "/console/cameras")
    shot(aud, shots, "44-auditor-cameras")

    # admin: cameras with keyrings and ingest, register one; tokens with expiry
    adm = sign_in(browser, vault, "Admin", watch)
    assert adm.url.endswith("/console/cameras")
    assert "valid" in adm.inner_text("table")
    adm.fill("input[name=camera_id]", "cam-lobby")
    adm.fill("input[name=name]", "Lobby, north door")
    adm.click("form[action='/console/cameras'] button")
    adm.wait_for_load_state()
    assert "Lobby, north door" in adm.content()
    shot(adm, shots, "50-admin-cameras")
    adm.goto(vault.url + "/console/tokens")
    assert "Judge Ito" in adm.content()
    shot(adm, shots, "51-admin-tokens")

    # a role that strays: the 403 page, and an audit entry
    adm.goto(vault.url + "/console/investigator")
    assert "Not allowed" in adm.inner_text("h1")
    shot(adm, shots, "52-admin-denied")
    assert vault.audit_actions()[-1] == "access.denied"

    # a session outlives neither its 15 minutes nor a sign-out
    vault.clock.advance(minutes=16)
    aud.goto(vault.url + "/console/auditor")
    assert aud.url.startswith(vault.url + "/console/login") and "expired" in aud.content()
    shot(aud, shots, "60-session-expired")

    # days later the sweeper has erased what no warrant holds and destroyed the empty
    # epochs' keys: the retention page shows it
    from vault.retention import sweep

    vault.clock.advance(days=1)
    late, late_crop = vault.seal("cam-1", t0 + timedelta(days=1), track=99)  # the next epoch
    assert vault.ingest("cam-1", [late]).status_code == 200
    crops[late["record_id"]] = late_crop
    vault.clock.advance(days=4)
    sweep(
        vault.ctx.engine,
        vault.keystore,
        vault.clock(),
        after_warrant=vault.ctx.policy.legal_hold.after_warrant,
    )
    aud = sign_in(browser, vault, "Auditor", watch)
    aud.goto(vault.url + "/console/retention")
    assert "3 erased so far" in aud.content()
    assert "cam-1@" in aud.inner_text("#keys-destroyed")  # its empty epochs' keys
    assert "Kept past their expiry" in aud.content()  # the warrant's records, and why
    shot(aud, shots, "45-retention-after-sweep")

    # what every context received: pages, styles, charts; a crop only in the zip download
    # (which Playwright hands over as a download, not a response the pages could render)
    assert watch.seen
    assert all(u.endswith(f"/{req_id}/fetch") for u, _, crop in watch.seen if crop)
    others = {t for u, t, _ in watch.seen if not u.endswith("/fetch")}
    assert others <= {*PAGE_TYPES, ""}, others
    assert len(list(shots.glob("*.png"))) >= 20
