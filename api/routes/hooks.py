"""``POST /hooks/git``: a git provider says a branch moved; sync the GitSources that follow it.

Called by GitHub, Gitea/Forgejo and GitLab. The only effect is :meth:`SyncTrigger.request`
for each GitSource that follows the pushed repository and branch and whose
``webhookSecretRef`` secret signed the request. What it must never do: trigger anything on an
unverified request, say which part of a verification failed (every failure is "signature does
not match"), or log, echo or store a secret or a signature.
"""

from __future__ import annotations

import logging
from typing import Annotated

import fastapi
import pydantic

from api import deps, views
from nebula import webhooks
from nebula.resources.git_source import GitSource
from nebula.secrets import Secrets
from nebula.store import source_id

__all__ = ["MAX_BODY", "SIGNATURE_MISMATCH", "HookResult", "git", "raw_body", "router"]

log = logging.getLogger(__name__)
router = fastapi.APIRouter()

SIGNATURE_MISMATCH = "signature does not match"
"""The whole answer to an unverified push, whatever failed (no source, no secret, wrong one)."""
MAX_BODY = 25 * 1024 * 1024
"""Bytes; GitHub caps its payloads at 25 MB, and no provider sends more."""


class HookResult(views.ApiModel):
    """What a webhook delivery caused."""

    event: str
    """The provider's event: push, ping, or the name of an event that is ignored."""
    provider: webhooks.Provider
    """Who sent it: github, gitea (Forgejo too) or gitlab."""
    ref: str | None = None
    """The ref pushed (refs/heads/main); null for anything but a push."""
    revision: str | None = None
    """The commit the ref points at now; null for anything but a push."""
    triggered: list[str] = pydantic.Field(default_factory=list)
    """GitSources asked to sync now, as namespace.name."""
    suspended: list[str] = pydantic.Field(default_factory=list)
    """GitSources that follow the push but are suspended, so were not asked."""


async def raw_body(request: fastapi.Request) -> bytes:
    """The body exactly as received: signatures are computed over these bytes, not a parse."""
    return await request.body()


def _secret(source: GitSource, secrets: Secrets) -> str | None:
    ref = source.spec.webhook_secret_ref
    if ref is None:
        return None
    return secrets.get(source.metadata.namespace or "default", ref.name, ref.key)


@router.post(
    "/git",
    status_code=fastapi.status.HTTP_202_ACCEPTED,
    response_model=HookResult,
    max_body_size=MAX_BODY,
    responses={
        200: {"model": HookResult, "description": "Nothing to sync: a ping, or another event"},
        400: {"description": "Not a git webhook, or a push payload without ref or repository"},
        401: {"description": SIGNATURE_MISMATCH},
    },
)
def git(
    request: fastapi.Request,
    response: fastapi.Response,
    body: Annotated[bytes, fastapi.Depends(raw_body)],
    store: deps.Store,
    secrets: deps.Secrets,
    trigger: deps.Trigger,
) -> HookResult:
    """Asks for a sync of every GitSource the push concerns whose secret signed it.

    202 with the sources asked; 200 when a verified push concerns no followed branch, and for
    a ping or any other event; 401 when no source of the repository verifies the signature.
    """
    # Parse first: a request that is no webhook at all gets a useful 400, not a 401.
    try:
        event = webhooks.parse(request.headers, body)
    # Not a git webhook, or a push payload without what a push must carry.
    except webhooks.MalformedWebhook as error:
        raise fastapi.HTTPException(fastapi.status.HTTP_400_BAD_REQUEST, str(error)) from None
    if isinstance(event, webhooks.Ping):
        response.status_code = fastapi.status.HTTP_200_OK
        return HookResult(event=webhooks.GITHUB_PING, provider=event.provider)
    if isinstance(event, webhooks.Ignored):
        response.status_code = fastapi.status.HTTP_200_OK
        return HookResult(event=event.event, provider=event.provider)

    # Verify against every source of this repository, whatever branch it follows, so that an
    # unsigned caller learns nothing, not even which branches are followed.
    sources = views.git_sources(store.list("GitSource"))
    candidates = [source for _, source in sources if webhooks.same_repository(event, source)]
    verified = [
        source
        for source in candidates
        if (secret := _secret(source, secrets))
        and webhooks.verify(event.provider, request.headers, body, secret)
    ]
    if not verified:
        log.warning(
            "%s push to %r of %r: no GitSource verified it (%d of this repository)",
            event.provider, event.ref, event.urls[0], len(candidates),
        )  # fmt: skip
        raise fastapi.HTTPException(fastapi.status.HTTP_401_UNAUTHORIZED, SIGNATURE_MISMATCH)

    # Only now the branch: a verified push to a branch nobody follows is fine, and a no-op.
    following = [source for source in verified if webhooks.matches(event, source)]
    suspended = [source_id(s.key) for s in following if s.spec.suspend]
    triggered = []
    for source in following:
        if not source.spec.suspend:
            trigger.request(source.key)
            triggered.append(source_id(source.key))
    log.info(
        "%s push to %r (%s): sync requested for %s",
        event.provider, event.ref, event.after[:7], ", ".join(triggered) or "no GitSource",
    )  # fmt: skip
    if not triggered:
        response.status_code = fastapi.status.HTTP_200_OK
    return HookResult(
        event="push",
        provider=event.provider,
        ref=event.ref,
        revision=event.after,
        triggered=triggered,
        suspended=suspended,
    )
