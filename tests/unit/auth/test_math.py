"""Scramble math, verifiers and RSA wrapping, checked against PyMySQL as an oracle."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator

import pymysql._auth as pm_auth
import pytest

from vtwist.protocols.mysql import auth
from vtwist.protocols.mysql.auth import (
    Account,
    Pbkdf2Verifier,
    RsaKey,
    check_native_response,
    check_sha2_fast,
    load_rsa_key,
    make_scramble,
    native_double_sha1,
    native_password_hash,
    native_password_response,
    parse_native_hash,
    rsa_decrypt_password,
    rsa_encrypt_password,
    sha2_double_digest,
    sha2_fast_response,
    verify_password,
)

SCRAMBLE = bytes(range(0x30, 0x30 + 20))
PASSWORDS = [b"app-secret", b"x", "pässwörd".encode(), b"a" * 100]


def test_make_scramble_is_20_printable_bytes_without_nul() -> None:
    s = make_scramble()
    assert len(s) == 20
    assert all(0x21 <= b <= 0x7E for b in s)
    assert make_scramble() != s


def test_native_hash_known_value() -> None:
    # The value MySQL documents for PASSWORD('password') / the example in the brief.
    assert native_password_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    assert parse_native_hash(native_password_hash("pw")) == native_double_sha1("pw")


@pytest.mark.parametrize(
    "bad", ["", "*12", "6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9X", "*" + "g" * 40]
)
def test_parse_native_hash_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_native_hash(bad)


@pytest.mark.parametrize("password", PASSWORDS)
def test_native_response_matches_pymysql(password: bytes) -> None:
    expected = pm_auth.scramble_native_password(password, SCRAMBLE)
    assert native_password_response(password, SCRAMBLE) == expected
    assert native_password_response(password.decode(), SCRAMBLE) == expected
    assert check_native_response(native_double_sha1(password), SCRAMBLE, expected)


def test_native_response_rejects_wrong_password_scramble_and_length() -> None:
    stored = native_double_sha1("right")
    assert not check_native_response(stored, SCRAMBLE, native_password_response("wrong", SCRAMBLE))
    other = bytes(reversed(SCRAMBLE))
    assert not check_native_response(stored, other, native_password_response("right", SCRAMBLE))
    good = native_password_response("right", SCRAMBLE)
    assert not check_native_response(stored, SCRAMBLE, good[:-1])
    assert not check_native_response(stored, SCRAMBLE, b"")
    assert native_password_response("", SCRAMBLE) == b""


@pytest.mark.parametrize("password", PASSWORDS)
def test_sha2_fast_matches_pymysql(password: bytes) -> None:
    expected = pm_auth.scramble_caching_sha2(password, SCRAMBLE)
    assert sha2_fast_response(password, SCRAMBLE) == expected
    assert check_sha2_fast(sha2_double_digest(password), SCRAMBLE, expected)
    assert not check_sha2_fast(sha2_double_digest(b"other"), SCRAMBLE, expected)
    assert not check_sha2_fast(sha2_double_digest(password), SCRAMBLE, expected[:31])
    assert sha2_fast_response(b"", SCRAMBLE) == b""


def test_sha2_double_digest_definition() -> None:
    assert sha2_double_digest("pw") == hashlib.sha256(hashlib.sha256(b"pw").digest()).digest()


def test_pbkdf2_round_trip_and_format() -> None:
    v = Pbkdf2Verifier.create("s3cret", 1000, salt=b"0123456789abcdef")
    text = str(v)
    assert text.startswith("pbkdf2-sha256$1000$")
    assert Pbkdf2Verifier.parse(text) == v
    assert v.verify("s3cret") and not v.verify("s3cret ")
    assert v.digest == hashlib.pbkdf2_hmac("sha256", b"s3cret", b"0123456789abcdef", 1000)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "pbkdf2-sha1$1000$MDEyMzQ1Njc=$" + "A" * 44,
        "pbkdf2-sha256$abc$MDEyMzQ1Njc=$" + "A" * 43 + "=",
        "pbkdf2-sha256$10$MDEyMzQ1Njc=$" + "A" * 43 + "=",  # too few iterations
        "pbkdf2-sha256$99999999$MDEyMzQ1Njc=$" + "A" * 43 + "=",  # would block the reactor
        "pbkdf2-sha256$1000$!!$" + "A" * 43 + "=",
        "pbkdf2-sha256$1000$MDEyMzQ1Njc=$QUFB",  # hash too short
        "pbkdf2-sha256$1000$MDEy$" + "A" * 43 + "=",  # salt too short
    ],
)
def test_pbkdf2_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        Pbkdf2Verifier.parse(bad)


def test_rsa_pymysql_encrypts_we_decrypt(rsa_key: RsaKey) -> None:
    for password in [*PASSWORDS, b""]:
        ct = pm_auth.sha2_rsa_encrypt(password, SCRAMBLE, rsa_key.public_pem)
        assert rsa_decrypt_password(rsa_key, ct, SCRAMBLE) == password
        assert rsa_decrypt_password(rsa_key.private_key, ct, SCRAMBLE) == password


def test_rsa_we_encrypt_and_decrypt(rsa_key: RsaKey) -> None:
    ct = rsa_encrypt_password("app-secret", SCRAMBLE, rsa_key.public_pem)
    assert len(ct) == 256
    assert rsa_decrypt_password(rsa_key, ct, SCRAMBLE) == b"app-secret"
    # Decrypted with another scramble the trailing NUL is lost: refused.
    with pytest.raises(ValueError):
        rsa_decrypt_password(rsa_key, ct, bytes(20))
    with pytest.raises(ValueError):
        rsa_decrypt_password(rsa_key, b"\x01" * 256, SCRAMBLE)


def test_rsa_key_save_and_load(rsa_key: RsaKey) -> None:
    loaded = load_rsa_key(rsa_key.private_pem())
    assert loaded.public_pem == rsa_key.public_pem
    assert loaded.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_rsa_key_too_small_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    with pytest.raises(ValueError, match="2048"):
        RsaKey.from_private_key(rsa.generate_private_key(public_exponent=65537, key_size=1024))


# --- constant time and uniform cost (checked by instrumenting, never by timing) ------------


@pytest.fixture
def compare_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[bytes, bytes]]]:
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    yield calls


def test_checks_use_compare_digest(compare_calls: list[tuple[bytes, bytes]]) -> None:
    stored = native_double_sha1("pw")
    assert check_native_response(stored, SCRAMBLE, native_password_response("pw", SCRAMBLE))
    assert len(compare_calls) == 1 and compare_calls[0][1] == stored
    assert check_sha2_fast(sha2_double_digest("pw"), SCRAMBLE, sha2_fast_response("pw", SCRAMBLE))
    assert len(compare_calls) == 2
    assert Pbkdf2Verifier.create("pw", 1000).verify("pw")
    assert len(compare_calls) == 3
    assert verify_password(Account("u", native_hash=stored), "pw")
    # The decoy PBKDF2 comparison, then the native one.
    assert len(compare_calls) == 5 and compare_calls[-1][1] == stored


def test_auth_module_never_compares_secrets_with_eq() -> None:
    # Code review made executable: the module compares secret-derived bytes only through
    # hmac.compare_digest (equality is used for lengths, plugin names and fixed markers).
    import inspect

    src = inspect.getsource(auth)
    for secret in ("digest ==", "_hash ==", "response ==", "candidate ==", "cached =="):
        assert secret not in src


@pytest.mark.parametrize(
    "account",
    [
        Account("native_only", native_hash=native_double_sha1("pw")),
        Account("sha2", "caching_sha2_password", sha2_verifier=Pbkdf2Verifier.create("pw", 1000)),
        Account("empty", empty_password=True),
        auth.decoy_account("ghost", "caching_sha2_password"),
    ],
)
def test_verify_password_costs_one_pbkdf2(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []
    real = hashlib.pbkdf2_hmac

    def spy(name: str, pw: bytes, salt: bytes, n: int) -> bytes:
        runs.append(n)
        return real(name, pw, salt, n)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", spy)
    verify_password(account, b"pw")
    assert len(runs) == 1


def test_verify_password_results() -> None:
    native = Account("n", native_hash=native_double_sha1("pw"))
    assert verify_password(native, "pw") and not verify_password(native, "px")
    both = Account(
        "b",
        "caching_sha2_password",
        native_double_sha1("pw"),
        Pbkdf2Verifier.create("pw", 1000),
    )
    assert verify_password(both, "pw") and not verify_password(both, "")
    # Disagreeing verifiers (a hand-edited file) never let either password in.
    mixed = Account(
        "m", "caching_sha2_password", native_double_sha1("a"), Pbkdf2Verifier.create("b", 1000)
    )
    assert not verify_password(mixed, "a") and not verify_password(mixed, "b")
    empty = Account("e", empty_password=True)
    assert verify_password(empty, "") and not verify_password(empty, "x")
    assert not verify_password(auth.decoy_account("ghost", "mysql_native_password"), "")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"plugin": "client_ed25519", "native_hash": bytes(20)},
        {"native_hash": bytes(20), "empty_password": True},
        {},
        {"native_hash": bytes(19)},
        {
            "plugin": "mysql_native_password",
            "sha2_verifier": Pbkdf2Verifier(1000, b"s" * 16, bytes(32)),
        },
    ],
)
def test_account_invariants(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Account("u", **kwargs)  # type: ignore[arg-type]


def test_account_repr_keeps_hashes_out_of_logs() -> None:
    verifier = Pbkdf2Verifier.create("pw", 1000)
    acct = Account("u", "caching_sha2_password", native_double_sha1("pw"), verifier)
    text = repr(acct) + repr(verifier)
    assert native_double_sha1("pw").hex() not in text and "digest" not in text
    assert str(verifier) not in text and "native_hash" not in text
