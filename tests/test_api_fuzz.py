"""Schemathesis against the app's own OpenAPI schema: whatever it generates, each call made
with a token of a role the endpoint allows (so the handlers run, not only the role check),
and a few with every other role's token, no answer is a server error. Hypothesis' seed is fixed.

(schemathesis' pytest plugin does not load under pytest 9, so the operations are walked
here with its Hypothesis strategies directly.)"""

from __future__ import annotations

from datetime import timedelta

import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from test_api_roles import MATRIX

ROLE_FOR = {(m, p): sorted(roles)[0] for m, p, roles in MATRIX}


def _fuzz(op, headers: dict, examples: int = 25) -> list[int]:
    """Generated calls of one operation -> their statuses; fails on the first 5xx."""
    seen: list[int] = []

    @seed(26)  # the same cases on every run: a failure is reproducible, never flaky
    @given(case=op.as_strategy())
    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        resp = case.call(headers=headers)
        seen.append(resp.status_code)
        assert resp.status_code < 500, (op.method, op.path, case.body, resp.text[:300])

    check()
    return seen


def test_no_server_errors_for_generated_input(api):
    recs = [api.seal("cam-1", api.t0 + timedelta(minutes=m), track=m)[0] for m in (1, 2)]
    assert api.ingest("cam-1", recs).status_code == 200
    w = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()
    assert api.request(w["id"], [recs[0]["record_id"]]).status_code == 201

    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    calls, statuses = 0, set()
    for result in schema.get_all_operations():
        op = result.ok()
        role = ROLE_FOR.get((op.method.upper(), op.path))
        headers = api.h(api.by_role[role]) if role else {}

        for status in _fuzz(op, headers):
            calls += 1
            statuses.add(status)
        for other in api.ROLES:  # every other role's token too: refused, never a 5xx
            if other != role:
                calls += len(_fuzz(op, api.h(api.by_role[other]), examples=4))
    assert calls >= 35 * len(MATRIX)  # every operation was exercised, with every role
    assert statuses & {200, 201} and statuses & {404, 409, 422}
