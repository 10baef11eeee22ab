"""The expiry (`exp`) of a Data Lake access token, read from the JWT's claims without verifying it: the hub checked
the token when it got it, and Rucio or EOS check it again on every use. What reads it here only decides when a
token is stale: the sidebar's "log in again" (singleuser.expired_session), the `rucio` command's
(singleuser.rucio_cli) and when Dask workers drop their copies (singleuser.dask_tokens).

Standard library only: the `rucio` command and Dask workers import it without Jupyter Server or a JWT library.
"""

from __future__ import annotations

import base64
import json


def unverified_exp(token: str) -> float | None:
    """The `exp` claim of a JWT, or None when the token is not a JWT with a numeric `exp` (an opaque token)."""
    try:
        payload = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None
