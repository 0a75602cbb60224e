"""ClientAuth (the tablet's side toward mysqld), checked against PyMySQL's math."""

from __future__ import annotations

import pymysql._auth as pm_auth
import pytest

from vtwist.protocols.mysql.auth import (
    ClientAuth,
    RsaKey,
    rsa_decrypt_password,
)
from vtwist.protocols.mysql.constants import (
    CACHING_SHA2_PASSWORD,
    CLEAR_PASSWORD,
    NATIVE_PASSWORD,
)
from vtwist.protocols.mysql.errors import MySQLError

SCRAMBLE = b"abcdefghij0123456789"
PW = b"tablet-secret"


def test_initial_native_and_sha2_match_pymysql() -> None:
    c = ClientAuth(PW, SCRAMBLE, NATIVE_PASSWORD, False)
    assert c.initial_response() == pm_auth.scramble_native_password(PW, SCRAMBLE)
    c = ClientAuth(PW.decode(), SCRAMBLE, CACHING_SHA2_PASSWORD, False)
    assert c.initial_response() == pm_auth.scramble_caching_sha2(PW, SCRAMBLE)


def test_greeting_scramble_with_trailing_nul_is_stripped() -> None:
    c = ClientAuth(PW, SCRAMBLE + b"\0", NATIVE_PASSWORD, False)
    assert c.initial_response() == pm_auth.scramble_native_password(PW, SCRAMBLE)


@pytest.mark.parametrize("plugin", ["client_ed25519", "", "dialog"])
def test_unknown_greeting_plugin_falls_back_to_native(plugin: str) -> None:
    c = ClientAuth(PW, SCRAMBLE, plugin, False)
    assert c.plugin == NATIVE_PASSWORD
    assert c.initial_response() == pm_auth.scramble_native_password(PW, SCRAMBLE)


def test_empty_password_responses() -> None:
    assert ClientAuth(b"", SCRAMBLE, NATIVE_PASSWORD, False).initial_response() == b""
    assert ClientAuth("", SCRAMBLE, CACHING_SHA2_PASSWORD, False).initial_response() == b""


def test_switch_uses_new_scramble() -> None:
    c = ClientAuth(PW, SCRAMBLE, CACHING_SHA2_PASSWORD, False)
    new = b"ZYXWVUTSRQPONMLKJIHG"
    assert c.feed_switch(NATIVE_PASSWORD, new + b"\0") == pm_auth.scramble_native_password(PW, new)
    assert c.plugin == NATIVE_PASSWORD
    c = ClientAuth(PW, SCRAMBLE, NATIVE_PASSWORD, False)
    assert c.feed_switch(CACHING_SHA2_PASSWORD, new + b"\0") == pm_auth.scramble_caching_sha2(
        PW, new
    )


def test_switch_to_unknown_plugin_is_1251() -> None:
    c = ClientAuth(PW, SCRAMBLE, NATIVE_PASSWORD, False)
    with pytest.raises(MySQLError) as e:
        c.feed_switch("client_ed25519", SCRAMBLE)
    assert e.value.code == 1251 and e.value.sqlstate == "08004"
    assert "client_ed25519" in e.value.message


def test_clear_password_only_over_tls_unless_allowed() -> None:
    c = ClientAuth(PW, SCRAMBLE, NATIVE_PASSWORD, True)
    assert c.feed_switch(CLEAR_PASSWORD, b"") == PW + b"\0"
    c = ClientAuth(PW, SCRAMBLE, NATIVE_PASSWORD, False)
    with pytest.raises(MySQLError) as e:
        c.feed_switch(CLEAR_PASSWORD, b"")
    assert e.value.code == 2059 and "TLS" in e.value.message
    c = ClientAuth(PW, SCRAMBLE, NATIVE_PASSWORD, False, allow_cleartext=True)
    assert c.feed_switch(CLEAR_PASSWORD, b"") == PW + b"\0"
    # A greeting naming clear text on plain TCP: answer natively instead.
    assert ClientAuth(PW, SCRAMBLE, CLEAR_PASSWORD, False).plugin == NATIVE_PASSWORD
    assert ClientAuth(PW, SCRAMBLE, CLEAR_PASSWORD, True).initial_response() == PW + b"\0"


def test_sha2_fast_path_success_waits_for_ok() -> None:
    c = ClientAuth(PW, SCRAMBLE, CACHING_SHA2_PASSWORD, False)
    assert c.feed_more_data(b"\x03") is None


def test_sha2_full_auth_over_tls_sends_password() -> None:
    c = ClientAuth(PW, SCRAMBLE, CACHING_SHA2_PASSWORD, True)
    assert c.feed_more_data(b"\x04") == PW + b"\0"


def test_sha2_full_auth_requests_key_then_rsa(rsa_key: RsaKey) -> None:
    c = ClientAuth(PW, SCRAMBLE, CACHING_SHA2_PASSWORD, False)
    assert c.feed_more_data(b"\x04") == b"\x02"
    ct = c.feed_more_data(rsa_key.public_pem)
    assert ct is not None and rsa_decrypt_password(rsa_key, ct, SCRAMBLE) == PW
    assert c.server_public_key == rsa_key.public_pem


def test_sha2_full_auth_with_configured_key(rsa_key: RsaKey) -> None:
    c = ClientAuth(PW, SCRAMBLE, CACHING_SHA2_PASSWORD, False, rsa_key.public_pem)
    ct = c.feed_more_data(b"\x04")
    assert ct is not None and rsa_decrypt_password(rsa_key, ct, SCRAMBLE) == PW


def test_sha2_full_auth_without_tls_or_key_when_requests_disabled() -> None:
    c = ClientAuth(PW, SCRAMBLE, CACHING_SHA2_PASSWORD, False, request_public_key=False)
    with pytest.raises(MySQLError) as e:
        c.feed_more_data(b"\x04")
    assert e.value.code == 2061


def test_bad_more_data() -> None:
    with pytest.raises(MySQLError) as e:
        ClientAuth(PW, SCRAMBLE, NATIVE_PASSWORD, False).feed_more_data(b"\x03")
    assert e.value.code == 2027
    with pytest.raises(MySQLError):
        ClientAuth(PW, SCRAMBLE, CACHING_SHA2_PASSWORD, False).feed_more_data(b"\x09")
    c = ClientAuth(PW, SCRAMBLE, CACHING_SHA2_PASSWORD, False)
    c.feed_more_data(b"\x04")
    with pytest.raises(MySQLError) as e:
        c.feed_more_data(b"not a key")
    assert e.value.code == 2027
