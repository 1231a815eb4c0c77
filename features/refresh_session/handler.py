"""The refresh grant of POST /token (RFC 6749 §6): rotate the refresh token, detect a replay.

POST /token (``features/token``) hands it the form when ``grant_type=refresh_token``; the
composition root gives it that grant. A refresh marks the token used and issues a new one in
the same session (rotation). A token presented again is a replay, as one copy of it was
stolen (RFC 9700 §4.14.2): the whole session is revoked, so thief and victim both log in
again. Every refusal, whatever the cause, is the wrong password's 401.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from features.refresh_session.queries import replayed_family, use_token
from shared.refresh_tokens import refresh_token_hash
from shared.services import Services
from shared.sessions import TokenForm, TokenResponse, login_refused, revoke_family

logger = logging.getLogger(__name__)


async def refresh_session(
    form: TokenForm, db_session: AsyncSession, services: Services
) -> TokenResponse:
    token_hash = refresh_token_hash(form.refresh_token or "")
    if token_hash is None:
        raise login_refused()  # not one of ours: an access token, say
    used = await use_token(db_session, token_hash)
    if used is None:
        family_id = await replayed_family(db_session, token_hash)
        if family_id is not None:
            await revoke_family(db_session, family_id)
            await db_session.commit()
            logger.warning("refresh token replayed: session %s revoked", family_id)
        raise login_refused()
    # The session's own budget, TOKEN_RATE_LIMIT refreshes a window (the address's is the
    # API-wide one: a refresh guesses no password). Over it: 429, and the rollback leaves the
    # token unused, to be presented again once the window ends.
    await services.session_refreshes.take(str(used.family_id))
    response = await services.sessions.issue(db_session, used.user_id, used.family_id)
    await db_session.commit()
    return response
