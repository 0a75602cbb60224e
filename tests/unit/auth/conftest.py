"""Shared fixtures of the auth tests: one RSA key per session (generation is slow-ish)."""

from __future__ import annotations

import pytest

from vtwist.protocols.mysql.auth import RsaKey, generate_rsa_key


@pytest.fixture(scope="session")
def rsa_key() -> RsaKey:
    return generate_rsa_key()
