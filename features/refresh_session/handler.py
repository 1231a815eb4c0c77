"""The refresh grant of POST /token (RFC 6749 §6): rotate the refresh token, detect a replay.

POST /token (``features/token``) hands it the form when ``grant_type=refresh_token``; the
composition root gives it that grant. A refresh marks the token used and issues a new one in
the same session (rotation). A token presented again is a replay, as one copy of it was
stolen (RFC 9700 §4.14.2): the whole session is revoked, so thief and victim both log in
again. Every refusal, whatever the cause, is the wrong password's 401.

Everything happens under the session's row lock (``shared/accounts/sessions.py``), with the
session's
and the token's state read after it: a revoke or a replay detection that answered first is
seen, and one that comes later waits for this refresh and then ends the session its new
token belongs to. Of two concurrent refreshes with one token, the second waits for the
first, then finds the token used: a replay, as if it came later, so the session is revoked
(exactly one of them got tokens, and those die with the session).
"""

from __future__ import annotations

import logging

from features.refresh_session.queries import lock_session, lock_user, use_token, was_used
from shared.accounts.refresh_tokens import refresh_token_hash
from shared.accounts.sessions import SessionIssuer, TokenForm, TokenResponse, revoke_session
from shared.db import Database
from shared.http.auth import login_refused
from shared.http.budgets import Budget

logger = logging.getLogger(__name__)


async def refresh_session(
    form: TokenForm, *, db: Database, sessions: SessionIssuer, refreshes: Budget
) -> TokenResponse:
    token_hash = refresh_token_hash(form.refresh_token or "")
    if token_hash is None:
        raise login_refused()  # not one of ours: an access token, say
    async with db.begin() as conn:
        if await lock_user(conn, token_hash) is None:
            raise login_refused()  # unknown token, or its account was deleted
        session = await lock_session(conn, token_hash)
        if session is None or session.revoked or session.ended:
            raise login_refused()
        if await use_token(conn, token_hash):
            # The session's own budget, TOKEN_RATE_LIMIT refreshes a window (the address's is
            # the API-wide one: a refresh guesses no password). Over it: 429, and the rollback
            # leaves the token unused, to be presented again once the window ends.
            await refreshes.take(str(session.id))
            return await sessions.issue(conn, session.user_id, session.id, session.expires_at)
        replayed = await was_used(conn, token_hash)  # else it expired unused
        if replayed:
            await revoke_session(conn, session.id)
    if replayed:  # the revoke is committed
        logger.warning("refresh token replayed: session %s revoked", session.id)
    raise login_refused()
