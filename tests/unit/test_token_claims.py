"""singleuser.token_claims: the `exp` of a token, read without verifying it (one reader for the sidebar, `rucio`,
datalakectl and the Dask workers)."""

from __future__ import annotations

import jwt
import pytest

from singleuser.token_claims import unverified_exp


def test_the_exp_of_a_jwt_is_read_whatever_key_signed_it():
    assert unverified_exp(jwt.encode({"sub": "alice", "exp": 1700000000}, "k" * 32, algorithm="HS256")) == 1700000000


@pytest.mark.parametrize(
    "token",
    ["", "opaque-token", "a.b.c", jwt.encode({"sub": "alice"}, "k" * 32), jwt.encode({"exp": "soon"}, "k" * 32)],
    ids=["empty", "opaque", "not-base64-json", "no-exp", "exp-not-a-number"],
)
def test_a_token_without_a_readable_exp_has_none(token):
    assert unverified_exp(token) is None
