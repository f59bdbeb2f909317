"""Opening requests: an investigator asks, trustees approve with their shares, and the
requester fetches the crops once."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from escrow.canonical import as_utc
from vault import openings, warrants
from vault.api.actions import Action, act
from vault.api.context import VaultContext
from vault.api.deps import Caller, InvestigatorCaller, RequestReader, TrusteeCaller, get_ctx
from vault.api.errors import AUTHENTICATED, WITH_BODY, WITH_PARAMS, Refused, responses
from vault.api.schemas import (
    ApprovalIn,
    ApprovalOut,
    KeyShareOut,
    ReleasedCrop,
    ReleaseIn,
    ReleaseOut,
    RequestCreated,
    RequestId,
    RequestIn,
    RequestOut,
    ReviewOut,
)
from vault.api.views import record_meta, warrant_out
from vault.models import OpeningRequest, Warrant
from vault.store import checkpoint_wal

router = APIRouter(prefix="/requests", tags=["requests"], responses=responses(*AUTHENTICATED))


def out(s, req: OpeningRequest, ctx: VaultContext) -> RequestOut:
    return RequestOut(
        id=req.id,
        warrant_id=req.warrant_id,
        requester=req.requester,
        record_ids=openings.record_ids(req),
        reason=req.reason,
        created=as_utc(req.created),
        status=req.status,
        approvals=[
            ApprovalOut(trustee=a.trustee, share_index=a.share_index, at=as_utc(a.created))
            for a in openings.approvals(s, req)
        ],
        required=ctx.required_approvals,
        digest=openings.digest(req),
        released_at=as_utc(req.released_at) if req.released_at else None,
        released_count=req.released_count,
        held_until=as_utc(req.held_until) if req.held_release is not None else None,
    )


def _visible(req: OpeningRequest, caller: Caller) -> bool:
    return caller.role != "investigator" or req.requester_token_id == caller.token_id


def _load(s, request_id: str, caller: Caller, lock: bool = False) -> OpeningRequest:
    """The request, with its row locked for the rest of the transaction when `lock`: the
    no-op UPDATE comes first, so concurrent approvals or releases of one request queue up on
    both engines instead of racing."""
    if lock:
        s.execute(
            update(OpeningRequest)
            .where(OpeningRequest.id == request_id)
            .values(status=OpeningRequest.status)
        )
    req = s.get(OpeningRequest, request_id)
    if req is None or not _visible(req, caller):
        raise Refused(f"no request {request_id}", 404)
    return req


def _locked(a: Action, request_id: str, caller: Caller) -> tuple[OpeningRequest, Warrant]:
    """The request, locked (see _load), and its warrant: what approving and releasing act on
    (after the trail's writer lock, which `act` takes first: see vault.api.actions)."""
    req = _load(a.s, request_id, caller, lock=True)
    return req, warrants.get(a.s, req.warrant_id)


@router.post(
    "", response_model=RequestCreated, status_code=201, responses=responses(*WITH_BODY, 404)
)
def create(body: RequestIn, request: Request, caller: InvestigatorCaller):
    """Ask to open chosen records of a warrant's scope. The fetch secret is shown once."""
    ctx = get_ctx(request)
    with act(ctx, caller) as a:
        w = warrants.get(a.s, body.warrant_id)
        req, secret = openings.create(
            a.s,
            w,
            ctx.warrant_key,
            requester=caller.name,
            requester_token_id=caller.token_id,
            ids=body.record_ids,
            reason=body.reason,
            now=a.now,
        )
        a.audit(
            "request.create",
            {
                "request": req.id,
                "warrant": w.id,
                "records": openings.record_ids(req),
                "reason": body.reason,
            },
        )
        return RequestCreated(request=out(a.s, req, ctx), fetch_secret=secret)


@router.get("", response_model=list[RequestOut])
def list_requests(request: Request, caller: RequestReader):
    ctx = get_ctx(request)
    with ctx.factory() as s:
        reqs = s.scalars(select(OpeningRequest).order_by(OpeningRequest.created)).all()
        return [out(s, r, ctx) for r in reqs if _visible(r, caller)]


@router.get("/{request_id}", response_model=RequestOut, responses=responses(*WITH_PARAMS, 404))
def get_request(
    request_id: RequestId,
    request: Request,
    caller: RequestReader,
):
    ctx = get_ctx(request)
    with ctx.factory() as s:
        return out(s, _load(s, request_id, caller), ctx)


@router.get(
    "/{request_id}/review", response_model=ReviewOut, responses=responses(*WITH_PARAMS, 404)
)
def review(request_id: RequestId, request: Request, caller: TrusteeCaller):
    """Everything a trustee's client shows and checks before approving: the warrant's case
    and legal basis, the reason, the requester, the records, and for each (camera, epoch)
    key they need its certificate and this trustee's sealed share."""
    ctx = get_ctx(request)
    with ctx.factory() as s:
        req = _load(s, request_id, caller)
        w = warrants.get(s, req.warrant_id)
        r = openings.review(s, req, w, ctx.keystore, caller.trustee_index)
        return ReviewOut(
            request=out(s, req, ctx),
            warrant=warrant_out(w, ctx),
            records=[record_meta(row) for row in r["rows"]],
            keys=[KeyShareOut(**k) for k in r["keys"]],
            digest_fields=r["digest_fields"],
            release_public_key=r["release_public_key"],
            authority_public_key=r["authority_public_key"],
            trustee_index=r["trustee_index"],
        )


@router.post(
    "/{request_id}/approvals", response_model=RequestOut, responses=responses(*WITH_BODY, 404, 409)
)
def approve(
    request_id: RequestId,
    body: ApprovalIn,
    request: Request,
    caller: TrusteeCaller,
):
    """Approve with this trustee's shares of the request's epoch keys, unsealed on the
    trustee's machine and sealed for the release (`escrow request approve` does it)."""
    ctx = get_ctx(request)
    try:
        with act(ctx, caller) as a:
            req, w = _locked(a, request_id, caller)
            n = openings.approve(
                a.s,
                req,
                w,
                ctx.warrant_key,
                ctx.keystore,
                trustee=caller.name,
                trustee_token_id=caller.token_id,
                trustee_index=caller.trustee_index,
                shares=body.shares,
                request_digest=body.request_digest,
                now=a.now,
            )
            a.audit(
                "request.approve",
                {"request": req.id, "approvals": n, "required": ctx.required_approvals},
            )
            return out(a.s, req, ctx)
    except IntegrityError as exc:  # a concurrent approval with the same trustee or share
        raise Refused("this trustee or share has already approved the request", 409) from exc


@router.post(
    "/{request_id}/release",
    response_model=ReleaseOut,
    responses=responses(*WITH_BODY, 404, 409, 410),
)
def release(
    request_id: RequestId,
    body: ReleaseIn,
    request: Request,
    caller: InvestigatorCaller,
):
    """Open the approved request's records and return the crops, once. Until the requester
    confirms receipt (`/received`), a released request answers again with the same crops,
    from a copy only the fetch secret opens: an answer lost on its way is not lost."""
    ctx = get_ctx(request)
    with act(ctx, caller) as a:
        req, w = _locked(a, request_id, caller)
        if req.status == "released":
            released, withheld = openings.redeliver(
                req, token_id=caller.token_id, fetch_secret=body.fetch_secret, now=a.now
            )
            action = "request.redeliver"
        else:
            released, withheld = openings.release(
                a.s,
                req,
                w,
                ctx.warrant_key,
                ctx.keystore,
                token_id=caller.token_id,
                fetch_secret=body.fetch_secret,
                required=ctx.required_approvals,
                now=a.now,
                hold_for=ctx.policy.openings.redeliver_for,
            )
            action = "request.release"
        a.audit(
            action,
            {
                "request": req.id,
                "warrant": req.warrant_id,
                "released": [[r["record_id"], r["ciphertext_sha256"]] for r in released],
                "withheld": withheld,
            },
        )
    checkpoint_wal(ctx.engine)  # the wiped shares leave SQLite's write-ahead log too
    b64 = base64.b64encode
    return ReleaseOut(
        request_id=request_id,
        released=[
            ReleasedCrop(
                **{k: r[k] for k in ("record_id", "camera_id", "best_time", "quality")},
                ciphertext_sha256=r["ciphertext_sha256"],
                jpeg=b64(r["jpeg"]).decode(),
                clip=[b64(f).decode() for f in r["clip"]],
                meta=r["meta"],
            )
            for r in released
        ],
        withheld=withheld,
    )


@router.post(
    "/{request_id}/received",
    response_model=RequestOut,
    responses=responses(*WITH_PARAMS, 404, 409),
)
def received(request_id: RequestId, request: Request, caller: InvestigatorCaller):
    """The requester has the released crops: the copy held for a lost answer is erased, and
    the request answers 410 from now on."""
    ctx = get_ctx(request)
    with act(ctx, caller) as a:
        req, _ = _locked(a, request_id, caller)
        held = openings.confirm_received(req, token_id=caller.token_id)
        a.audit("request.received", {"request": req.id, "held_copy_erased": held})
        result = out(a.s, req, ctx)
    checkpoint_wal(ctx.engine)
    return result
