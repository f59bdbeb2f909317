"""OpenAPI links: how the answer of one operation feeds the next (a warrant's id into a
request under it, a request's digest into an approval, its fetch secret into the release).

A client generator or Swagger UI shows them as "what to call next"; Schemathesis' state
machine follows them to chain calls (tests/test_api_stateful.py), so the fuzzer reaches
approvals and releases of requests that exist instead of guessing ids. They are written here,
in one table, and added to the schema FastAPI generates (`install`), because a route's
decorator cannot name another route's operation id before both exist.

Expressions are OpenAPI runtime expressions: `$response.body#/id` (a JSON pointer into the
answer), `$request.path.warrant_id`, `$request.body#/fetch_secret`. A body given in a link
is merged into what the caller sends, field by field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

Op = tuple[str, str]  # (method, path template), as in the schema

WARRANT, WARRANTS = ("GET", "/warrants/{warrant_id}"), ("GET", "/warrants")
ISSUE, REVOKE = ("POST", "/warrants"), ("POST", "/warrants/{warrant_id}/revoke")
RECORDS = ("GET", "/warrants/{warrant_id}/records")
CREATE, REQUESTS = ("POST", "/requests"), ("GET", "/requests")
REQUEST, REVIEW = ("GET", "/requests/{request_id}"), ("GET", "/requests/{request_id}/review")
APPROVE = ("POST", "/requests/{request_id}/approvals")
RELEASE = ("POST", "/requests/{request_id}/release")
RECEIVED = ("POST", "/requests/{request_id}/received")
AUDIT, VERIFY = ("GET", "/audit"), ("GET", "/audit/verify")
CHECKPOINT, PROOF = ("GET", "/audit/checkpoint"), ("GET", "/audit/proof")
CONSISTENCY, REPORT = ("GET", "/audit/consistency"), ("GET", "/retention/report")
CAMERAS, ADD_CAMERA = ("GET", "/cameras"), ("POST", "/cameras")
TOKENS, MAKE_TOKEN = ("GET", "/tokens"), ("POST", "/tokens")
REVOKE_TOKEN = ("POST", "/tokens/{token_id}/revoke")
KEYRING, INGEST, POLICY = ("GET", "/keyring"), ("POST", "/ingest"), ("GET", "/policy")


@dataclass(frozen=True)
class Link:
    """One OpenAPI link: after `source` answered `status`, call `target` with these values."""

    source: Op
    status: int
    name: str
    target: Op
    description: str
    parameters: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


def _warrant_links(source: Op, status: int, warrant_id: str) -> list[Link]:
    """Everything that can be done with a warrant whose id is at `warrant_id`."""
    p = {"warrant_id": warrant_id}
    return [
        Link(source, status, "GetWarrant", WARRANT, "The warrant and its state now.", p),
        Link(source, status, "RevokeWarrant", REVOKE, "Revoke it (a judge).", p),
        Link(source, status, "ListRecords", RECORDS, "The records in its scope.", p),
        Link(
            source,
            status,
            "CreateRequest",
            CREATE,
            "Ask to open records under it (an investigator).",
            body={"warrant_id": warrant_id},
        ),
    ]


def _request_links(source: Op, status: int, request_id: str, digest: str) -> list[Link]:
    """Reading, reviewing and approving a request whose id is at `request_id`."""
    p = {"request_id": request_id}
    return [
        Link(source, status, "GetRequest", REQUEST, "The request and its approvals.", p),
        Link(source, status, "ReviewRequest", REVIEW, "What a trustee checks first.", p),
        Link(
            source,
            status,
            "ApproveRequest",
            APPROVE,
            "A trustee's approval of this digest.",
            p,
            {"request_digest": digest},
        ),
    ]


LINKS: list[Link] = [
    *_warrant_links(ISSUE, 201, "$response.body#/id"),
    *_warrant_links(WARRANTS, 200, "$response.body#/0/id"),
    *_warrant_links(WARRANT, 200, "$response.body#/id"),
    Link(
        REVOKE,
        200,
        "GetWarrant",
        WARRANT,
        "The revoked warrant.",
        {"warrant_id": "$response.body#/id"},
    ),
    Link(
        RECORDS,
        200,
        "CreateRequest",
        CREATE,
        "Ask to open a record of the warrant's scope.",
        body={"warrant_id": "$request.path.warrant_id", "record_ids": ["$response.body#/0/id"]},
    ),
    Link(
        RECORDS,
        200,
        "AuditOfRecord",
        AUDIT,
        "The trail's entries that name the record.",
        {"record": "$response.body#/0/id"},
    ),
    *_request_links(CREATE, 201, "$response.body#/request/id", "$response.body#/request/digest"),
    Link(
        CREATE,
        201,
        "ReleaseRequest",
        RELEASE,
        "Fetch the crops once k trustees approved, with the secret shown once here.",
        {"request_id": "$response.body#/request/id"},
        {"fetch_secret": "$response.body#/fetch_secret"},
    ),
    Link(
        CREATE,
        201,
        "RevokeWarrant",
        REVOKE,
        "Revoke the request's warrant: the request is closed.",
        {"warrant_id": "$response.body#/request/warrant_id"},
    ),
    *_request_links(REQUESTS, 200, "$response.body#/0/id", "$response.body#/0/digest"),
    *_request_links(REQUEST, 200, "$response.body#/id", "$response.body#/digest"),
    *_request_links(REVIEW, 200, "$response.body#/request/id", "$response.body#/request/digest"),
    *_request_links(APPROVE, 200, "$response.body#/id", "$response.body#/digest"),
    Link(
        RELEASE,
        200,
        "GetRequest",
        REQUEST,
        "The request, now released.",
        {"request_id": "$response.body#/request_id"},
    ),
    Link(
        RELEASE,
        200,
        "ReleaseAgain",
        RELEASE,
        "A second fetch: the same crops again, from the held copy, until receipt is confirmed.",
        {"request_id": "$request.path.request_id"},
        {"fetch_secret": "$request.body#/fetch_secret"},
    ),
    Link(
        RELEASE,
        200,
        "ConfirmReceived",
        RECEIVED,
        "The crops arrived: erase the held copy; the request answers 410 from then on.",
        {"request_id": "$request.path.request_id"},
    ),
    Link(
        AUDIT,
        200,
        "ProveEntry",
        PROOF,
        "An entry's inclusion proof.",
        {"entry": "$response.body#/0/id"},
    ),
    Link(AUDIT, 200, "NextPage", AUDIT, "The entries after it.", {"after": "$response.body#/0/id"}),
    Link(
        VERIFY,
        200,
        "VerifyAgainstHead",
        VERIFY,
        "Verify later that the trail still extends this head.",
        {"expect_head": "$response.body#/head"},
    ),
    Link(
        VERIFY,
        200,
        "ConsistencyFrom",
        CONSISTENCY,
        "Prove that the trail walked is a prefix of the trail now.",
        {"first": "$response.body#/entries"},
    ),
    Link(
        CHECKPOINT,
        200,
        "ConsistencyFrom",
        CONSISTENCY,
        "Prove that this checkpoint's tree is a prefix of the trail now.",
        {"first": "$response.body#/size"},
    ),
    Link(
        CHECKPOINT,
        200,
        "ProveLast",
        PROOF,
        "The inclusion proof of the checkpoint's last entry.",
        {"entry": "$response.body#/size", "size": "$response.body#/size"},
    ),
    Link(
        PROOF,
        200,
        "ConsistencyFrom",
        CONSISTENCY,
        "Prove that the proof's tree is a prefix of the trail now.",
        {"first": "$response.body#/tree_size"},
    ),
    Link(
        CONSISTENCY,
        200,
        "ProveIn",
        PROOF,
        "An entry's inclusion in the later tree.",
        {"entry": "$response.body#/second", "size": "$response.body#/second"},
    ),
    Link(
        REPORT,
        200,
        "HoldingWarrant",
        WARRANT,
        "A warrant that holds records.",
        {"warrant_id": "$response.body#/warrant_holds/0/warrant"},
    ),
    Link(POLICY, 200, "RetentionReport", REPORT, "What the policy in force erased and holds."),
    Link(
        CAMERAS,
        200,
        "CameraToken",
        MAKE_TOKEN,
        "A token for a registered camera (an admin).",
        body={"role": "camera", "name": "$response.body#/0/id"},
    ),
    Link(
        ADD_CAMERA,
        201,
        "CameraToken",
        MAKE_TOKEN,
        "A token for the camera just registered.",
        body={"role": "camera", "name": "$response.body#/id"},
    ),
    Link(
        ADD_CAMERA,
        201,
        "AddAgain",
        ADD_CAMERA,
        "Registering the same camera again is a conflict.",
        body={"id": "$response.body#/id"},
    ),
    Link(
        MAKE_TOKEN,
        201,
        "RevokeToken",
        REVOKE_TOKEN,
        "Revoke it.",
        {"token_id": "$response.body#/id"},
    ),
    Link(REVOKE_TOKEN, 200, "ListTokens", TOKENS, "The tokens, this one revoked."),
    Link(
        TOKENS,
        200,
        "RevokeToken",
        REVOKE_TOKEN,
        "Revoke a listed token.",
        {"token_id": "$response.body#/0/id"},
    ),
    Link(
        KEYRING,
        200,
        "Ingest",
        INGEST,
        "Records sealed to the camera's first epoch key.",
        body={
            "records": [
                {
                    "camera_id": "$response.body#/camera_id",
                    "epoch_id": "$response.body#/epochs/0/epoch_id",
                    "suite": "$response.body#/epochs/0/suite",
                }
            ]
        },
    ),
    Link(
        INGEST,
        200,
        "AuditOfRecord",
        AUDIT,
        "The trail's entries that name the first record stored.",
        {"record": "$response.body#/stored/0"},
    ),
]


def add_links(schema: dict[str, Any], links: list[Link] = LINKS) -> dict[str, Any]:
    """Write `links` into `schema`'s responses (in place), each target named by its
    operationId. A link to or from an operation the schema lacks is a KeyError at start-up,
    not a link that silently leads nowhere."""
    paths = schema["paths"]
    for link in links:
        method, path = link.source
        response = paths[path][method.lower()]["responses"][str(link.status)]
        t_method, t_path = link.target
        entry: dict[str, Any] = {
            "operationId": paths[t_path][t_method.lower()]["operationId"],
            "description": link.description,
        }
        if link.parameters:
            entry["parameters"] = dict(link.parameters)
        if link.body is not None:
            entry["requestBody"] = link.body
        response.setdefault("links", {})[link.name] = entry
    return schema


def install(app: FastAPI) -> None:
    """Serve the schema with the links: FastAPI builds it once, on the first call."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_links(generate())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
