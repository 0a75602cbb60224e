"""ServerAuth: every exchange path, driven by vtwist's ClientAuth and by PyMySQL's math."""

from __future__ import annotations

import pytest

from tests.unit.auth.exchange import PyMySQLClient, make_client, run
from vtwist.protocols.mysql.auth import (
    Account,
    ClientAuth,
    Failure,
    Pbkdf2Verifier,
    RsaKey,
    SendMoreData,
    SendSwitch,
    ServerAuth,
    Sha2Cache,
    Step,
    Success,
    native_double_sha1,
    rsa_encrypt_password,
    sha2_double_digest,
)
from vtwist.protocols.mysql.constants import CACHING_SHA2_PASSWORD, CLEAR_PASSWORD, NATIVE_PASSWORD
from vtwist.protocols.mysql.errors import LocalProtocolError

NATIVE, SHA2, CLEAR = NATIVE_PASSWORD, CACHING_SHA2_PASSWORD, CLEAR_PASSWORD
SCRAMBLE = b"abcdefghij0123456789"
PW = "app-secret"
CLIENTS = ["vtwist", "pymysql"]


def account(plugin: str = NATIVE, password: str = PW, sha2: bool = True) -> Account:
    if password == "":
        return Account("app", plugin, empty_password=True)
    verifier = Pbkdf2Verifier.create(password, 1000) if sha2 else None
    return Account("app", plugin, native_double_sha1(password), verifier)


def server(
    acct: Account | None,
    *,
    secure: bool = False,
    rsa_key: RsaKey | None = None,
    cache: Sha2Cache | None = None,
    default_plugin: str = NATIVE,
    user: str = "app",
) -> ServerAuth:
    return ServerAuth(
        user=user,
        host="127.0.0.1",
        account=acct,
        scramble=SCRAMBLE,
        secure=secure,
        default_plugin=default_plugin,
        rsa_key=rsa_key,
        cache=cache,
    )


def denied(password_used: bool = True, user: str = "app") -> tuple[int, str, str]:
    using = "YES" if password_used else "NO"
    return 1045, "28000", f"Access denied for user '{user}'@'127.0.0.1' (using password: {using})"


def err(result: Step) -> tuple[int, str, str]:
    assert isinstance(result, Failure), result
    return result.error.code, result.error.sqlstate, result.error.message


# --- mysql_native_password -----------------------------------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
def test_native_ok(kind: str) -> None:
    r = run(server(account()), make_client(kind, PW, SCRAMBLE, NATIVE, False))
    assert r.trace == ["ok"]
    assert isinstance(r.result, Success)
    assert (r.result.user, r.result.plugin, r.result.more_data) == ("app", NATIVE, None)


@pytest.mark.parametrize("kind", CLIENTS)
def test_native_wrong_password(kind: str) -> None:
    r = run(server(account()), make_client(kind, "nope", SCRAMBLE, NATIVE, False))
    assert err(r.result) == denied()


def test_native_no_password_given() -> None:
    r = run(server(account()), make_client("vtwist", "", SCRAMBLE, NATIVE, False))
    assert err(r.result) == denied(password_used=False)


def test_native_garbage_response_lengths() -> None:
    for resp in (b"x", b"x" * 19, b"x" * 21, b"x" * 300):
        s = server(account())
        assert err(s.start(NATIVE, resp)) == denied()


# --- caching_sha2_password -------------------------------------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
def test_sha2_full_auth_over_tls_then_fast_path(kind: str) -> None:
    cache = Sha2Cache()
    acct = account(SHA2)
    first = run(server(acct, secure=True, cache=cache), make_client(kind, PW, SCRAMBLE, SHA2, True))
    assert first.trace == ["more b'\\x04'", "client <data>", "ok"]
    assert isinstance(first.result, Success) and first.result.more_data is None
    assert cache.get(acct) == sha2_double_digest(PW)
    # Later logins (any transport, a new scramble) take the fast path: 0x01 0x03, then OK.
    other = b"ZYXWVUTSRQPONMLKJIHG"
    s = ServerAuth(
        user="app", host="127.0.0.1", account=acct, scramble=other, secure=False, cache=cache
    )
    second = run(s, make_client(kind, PW, other, SHA2, False))
    assert second.trace == ["more b'\\x03'", "ok"]
    assert isinstance(second.result, Success) and second.result.more_data == b"\x03"


@pytest.mark.parametrize("kind", CLIENTS)
def test_sha2_full_auth_rsa_key_request(kind: str, rsa_key: RsaKey) -> None:
    cache = Sha2Cache()
    s = server(account(SHA2), rsa_key=rsa_key, cache=cache)
    r = run(s, make_client(kind, PW, SCRAMBLE, SHA2, False))
    assert r.trace == ["more b'\\x04'", "client b'\\x02'", "key", "client <data>", "ok"]
    assert len(cache) == 1


@pytest.mark.parametrize("kind", CLIENTS)
def test_sha2_full_auth_rsa_with_known_public_key(kind: str, rsa_key: RsaKey) -> None:
    s = server(account(SHA2), rsa_key=rsa_key)
    r = run(s, make_client(kind, PW, SCRAMBLE, SHA2, False, rsa_key.public_pem))
    assert r.trace == ["more b'\\x04'", "client <data>", "ok"]


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("secure", [True, False])
def test_sha2_wrong_password_full_auth(kind: str, secure: bool, rsa_key: RsaKey) -> None:
    cache = Sha2Cache()
    s = server(account(SHA2), secure=secure, rsa_key=rsa_key, cache=cache)
    r = run(s, make_client(kind, "nope", SCRAMBLE, SHA2, secure))
    assert err(r.result) == denied()
    assert len(cache) == 0


def test_sha2_fast_path_mismatch_falls_back_to_full_auth() -> None:
    cache = Sha2Cache()
    acct = account(SHA2)
    cache.put(acct, sha2_double_digest(PW))
    r = run(server(acct, secure=True, cache=cache), ClientAuth("nope", SCRAMBLE, SHA2, True))
    assert r.trace == ["more b'\\x04'", "client <data>", "err 1045"]
    # A password change (new account after reload) invalidates the old cached digest.
    changed = account(SHA2, password="new-secret")
    r = run(server(changed, secure=True, cache=cache), ClientAuth(PW, SCRAMBLE, SHA2, True))
    assert r.trace == ["more b'\\x04'", "client <data>", "err 1045"]
    r = run(
        server(changed, secure=True, cache=cache), ClientAuth("new-secret", SCRAMBLE, SHA2, True)
    )
    assert r.ok and cache.get(changed) == sha2_double_digest("new-secret")


def test_sha2_account_with_only_native_hash_full_auth() -> None:
    acct = account(SHA2, sha2=False)
    assert run(server(acct, secure=True), ClientAuth(PW, SCRAMBLE, SHA2, True)).ok
    assert not run(server(acct, secure=True), ClientAuth("x", SCRAMBLE, SHA2, True)).ok


def test_sha2_full_auth_refused_on_plain_tcp_without_rsa_key() -> None:
    r = run(server(account(SHA2)), ClientAuth(PW, SCRAMBLE, SHA2, False))
    code, _, message = err(r.result)
    assert code == 3159 and "TLS" in message
    assert r.trace == ["err 3159"]  # refused before the client could send its password


def test_sha2_cleartext_on_plain_tcp_is_never_checked(rsa_key: RsaKey) -> None:
    # A client that wrongly believes it is on TLS sends its password in clear: refused
    # (and not accepted even though it is the right password).
    s = server(account(SHA2), rsa_key=rsa_key)
    assert s.start(SHA2, ClientAuth(PW, SCRAMBLE, SHA2, False).initial_response()) == SendMoreData(
        b"\x04"
    )
    assert err(s.feed(PW.encode() + b"\0")) == denied()


def test_sha2_rsa_garbage_ciphertext_denied(rsa_key: RsaKey) -> None:
    s = server(account(SHA2), rsa_key=rsa_key)
    s.start(SHA2, ClientAuth(PW, SCRAMBLE, SHA2, False).initial_response())
    assert isinstance(s.feed(b"\x02"), SendMoreData)
    assert err(s.feed(b"\x07" * 256)) == denied()


def test_sha2_rsa_encrypted_with_wrong_scramble_denied(rsa_key: RsaKey) -> None:
    s = server(account(SHA2), rsa_key=rsa_key)
    s.start(SHA2, ClientAuth(PW, SCRAMBLE, SHA2, False).initial_response())
    assert err(s.feed(rsa_encrypt_password(PW, bytes(20), rsa_key.public_pem))) == denied()


def test_sha2_key_request_without_key_over_tls() -> None:
    s = server(account(SHA2), secure=True)
    s.start(SHA2, ClientAuth(PW, SCRAMBLE, SHA2, True).initial_response())
    assert err(s.feed(b"\x02"))[0] == 3159


def test_sha2_wrong_length_fast_response() -> None:
    assert err(server(account(SHA2), secure=True).start(SHA2, b"x" * 20)) == denied()


# --- empty passwords (pitfall 5: no 0x01 0x03 before the OK) ---------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("plugin", [NATIVE, SHA2])
def test_empty_password_straight_to_ok(kind: str, plugin: str) -> None:
    r = run(server(account(plugin, password="")), make_client(kind, "", SCRAMBLE, plugin, False))
    assert r.trace == ["ok"]
    assert isinstance(r.result, Success) and r.result.more_data is None


@pytest.mark.parametrize("plugin", [NATIVE, SHA2])
def test_empty_password_also_accepts_single_nul(plugin: str) -> None:
    assert isinstance(server(account(plugin, password="")).start(plugin, b"\0"), Success)


@pytest.mark.parametrize("plugin", [NATIVE, SHA2])
def test_empty_password_account_refuses_a_password(plugin: str) -> None:
    r = run(server(account(plugin, password="")), ClientAuth("x", SCRAMBLE, plugin, True))
    assert err(r.result) == denied()


def test_sha2_empty_response_for_account_with_password() -> None:
    r = run(server(account(SHA2), secure=True), ClientAuth("", SCRAMBLE, SHA2, True))
    assert err(r.result) == denied(password_used=False)


# --- mysql_clear_password ------------------------------------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
def test_clear_password_over_tls(kind: str) -> None:
    acct = account(CLEAR)
    r = run(server(acct, secure=True), make_client(kind, PW, SCRAMBLE, NATIVE, True))
    assert r.trace == ["switch mysql_clear_password", "ok"]
    r = run(server(acct, secure=True), make_client(kind, "bad", SCRAMBLE, NATIVE, True))
    assert err(r.result) == denied()


def test_clear_password_refused_without_tls_before_any_password() -> None:
    s = server(account(CLEAR))
    result = s.start(NATIVE, ClientAuth(PW, SCRAMBLE, NATIVE, False).initial_response())
    code, _, message = err(result)
    assert code == 3159 and "mysql_clear_password" in message and "TLS" in message
    # Even if the client started with clear text itself.
    result = server(account(CLEAR)).start(CLEAR, PW.encode() + b"\0")
    assert err(result)[0] == 3159


def test_client_starting_with_clear_is_switched_to_account_plugin() -> None:
    s = server(account(NATIVE), secure=True)
    step = s.start(CLEAR, PW.encode() + b"\0")
    assert step == SendSwitch(NATIVE, SCRAMBLE + b"\0")


# --- auth switch -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
def test_switch_sha2_client_to_native_account(kind: str) -> None:
    r = run(server(account(NATIVE)), make_client(kind, PW, SCRAMBLE, SHA2, False))
    assert r.trace == ["switch mysql_native_password", "ok"]


@pytest.mark.parametrize("kind", CLIENTS)
def test_switch_native_client_to_sha2_account(kind: str) -> None:
    r = run(server(account(SHA2), secure=True), make_client(kind, PW, SCRAMBLE, NATIVE, True))
    assert r.trace == ["switch caching_sha2_password", "more b'\\x04'", "client <data>", "ok"]


def test_switch_data_is_scramble_plus_nul() -> None:
    step = server(account(SHA2)).start(NATIVE, b"x" * 20)
    assert step == SendSwitch(SHA2, SCRAMBLE + b"\0")


def test_empty_client_plugin_means_native() -> None:
    # JDBC may send no plugin name: the response is a native one, no switch needed.
    r = run(server(account(NATIVE)), ClientAuth(PW, SCRAMBLE, NATIVE, False), client_plugin="")
    assert r.trace == ["ok"]


def test_unknown_client_plugin_is_switched() -> None:
    r = run(
        server(account(NATIVE)),
        PyMySQLClient(PW.encode(), SCRAMBLE, NATIVE, False),
        client_plugin="client_ed25519",
    )
    assert r.trace == ["switch mysql_native_password", "ok"]


# --- unknown users: the same exchange, the same error ---------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize(
    ("default_plugin", "client_plugin", "secure"),
    [
        (NATIVE, NATIVE, False),
        (NATIVE, SHA2, False),
        (SHA2, SHA2, True),
        (SHA2, SHA2, False),
        (SHA2, NATIVE, True),
        (CLEAR, NATIVE, True),
        (CLEAR, NATIVE, False),
    ],
)
def test_unknown_user_same_as_wrong_password(
    kind: str, default_plugin: str, client_plugin: str, secure: bool, rsa_key: RsaKey
) -> None:
    acct = account(default_plugin)
    key = rsa_key if not secure else None
    wrong = run(
        server(acct, secure=secure, rsa_key=key, cache=Sha2Cache(), default_plugin=default_plugin),
        make_client(kind, "nope", SCRAMBLE, client_plugin, secure),
    )
    ghost = run(
        server(None, secure=secure, rsa_key=key, cache=Sha2Cache(), default_plugin=default_plugin),
        make_client(kind, "nope", SCRAMBLE, client_plugin, secure),
    )
    assert not wrong.ok and not ghost.ok
    assert ghost.trace == wrong.trace
    assert err(ghost.result) == err(wrong.result)
    # Even the right password of a real user does not let a ghost in.
    ghost_right = run(
        server(None, secure=secure, rsa_key=key, cache=Sha2Cache(), default_plugin=default_plugin),
        make_client(kind, PW, SCRAMBLE, client_plugin, secure),
    )
    assert err(ghost_right.result) == err(wrong.result)


def test_unknown_user_without_password_same_as_known() -> None:
    known = run(server(account()), ClientAuth("", SCRAMBLE, NATIVE, False))
    ghost = run(server(None), ClientAuth("", SCRAMBLE, NATIVE, False))
    assert err(known.result) == err(ghost.result) == denied(password_used=False)


def test_unknown_user_never_succeeds_with_empty_password() -> None:
    for plugin in (NATIVE, SHA2):
        s = server(None, default_plugin=plugin, secure=True)
        assert isinstance(s.start(plugin, b""), Failure)


def test_unknown_user_error_names_the_user() -> None:
    r = run(server(None, user="ghost"), ClientAuth("x", SCRAMBLE, NATIVE, False))
    assert err(r.result) == denied(user="ghost")


def test_unknown_user_does_not_fill_the_cache() -> None:
    cache = Sha2Cache()
    run(
        server(None, secure=True, cache=cache, default_plugin=SHA2),
        ClientAuth("", SCRAMBLE, SHA2, True),
    )
    assert len(cache) == 0


# --- misuse --------------------------------------------------------------------------------


def test_misuse_raises_local_protocol_error() -> None:
    s = server(account())
    with pytest.raises(LocalProtocolError):
        s.feed(b"x")
    s.start(NATIVE, b"")
    with pytest.raises(LocalProtocolError):
        s.start(NATIVE, b"")
    with pytest.raises(LocalProtocolError):
        s.feed(b"x")


def test_bad_construction() -> None:
    with pytest.raises(ValueError):
        ServerAuth(user="u", host="h", account=None, scramble=b"short", secure=False)
    with pytest.raises(ValueError):
        ServerAuth(
            user="u", host="h", account=None, scramble=SCRAMBLE, secure=False, default_plugin="x"
        )


def test_sha2_cache_bounded_and_retain() -> None:
    cache = Sha2Cache(max_entries=2)
    a, b, c = (Account(u, native_hash=bytes(20)) for u in "abc")
    for acct in (a, b, c):
        cache.put(acct, b"d" * 32)
    assert len(cache) == 2 and cache.get(a) is None and cache.get(c) == b"d" * 32
    cache.retain({"b": b, "c": Account("c", native_hash=b"\x01" * 20)})
    assert cache.get(b) == b"d" * 32 and cache.get(c) is None and len(cache) == 1
    with pytest.raises(ValueError):
        Sha2Cache(0)
