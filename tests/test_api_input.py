"""Hostile input that is not a matter of roles: numbers JSON cannot carry (NaN, infinities,
1e400) and request bodies that never arrive."""

from __future__ import annotations

import json
from datetime import timedelta

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
