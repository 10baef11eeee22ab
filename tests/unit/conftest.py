"""Fixtures shared by the unit tests of the hub plugins."""

import os

import pytest
from jupyterhub.crypto import CryptKeeper


@pytest.fixture
def crypt_key(monkeypatch):
    """A fresh auth_state key for this test (EscapeIAMAuthenticator refuses to run without one)."""
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", os.urandom(32).hex())
    CryptKeeper.clear_instance()
    yield
    CryptKeeper.clear_instance()
