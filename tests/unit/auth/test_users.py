"""StaticUsers and the users file: parsing, refusals, reload, hashing, IAuthServer."""

from __future__ import annotations

from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from tests.unit.auth.exchange import run
from vtwist.interfaces import IAuthServer
from vtwist.protocols.mysql.auth import (
    ClientAuth,
    Pbkdf2Verifier,
    ServerAuth,
    native_double_sha1,
    verify_password,
)
from vtwist.protocols.mysql.constants import (
    CACHING_SHA2_PASSWORD,
    CLEAR_PASSWORD,
    NATIVE_PASSWORD,
)
from vtwist.users import StaticUsers, UsersFileError, hash_password, parse_users

REPO = Path(__file__).resolve().parents[3]
SCRAMBLE = b"abcdefghij0123456789"


def entry(password: str, **extra: str) -> str:
    values = {**hash_password(password, iterations=1000), **extra}
    return "".join(f'{k} = "{v}"\n' for k, v in values.items())


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_example_file_user_app() -> None:
    users = StaticUsers(REPO / "etc" / "users.toml")
    app = users.account("app")
    assert app is not None and app.plugin == NATIVE_PASSWORD
    assert app.native_hash == native_double_sha1("app-secret")
    assert verify_password(app, "app-secret") and not verify_password(app, "app-secret!")
    assert users.account("root") is None


def test_static_users_provides_iauthserver(tmp_path: Path) -> None:
    users = StaticUsers(write(tmp_path / "u.toml", "[users.a]\n" + entry("pw")))
    assert verifyObject(IAuthServer, users)
    assert users.default_plugin() == NATIVE_PASSWORD
    assert users.sha2_cache() is users.sha2_cache()


def test_for_store_end_to_end(tmp_path: Path) -> None:
    text = "[users.a]\n" + entry("pw", plugin=CACHING_SHA2_PASSWORD)
    users = StaticUsers(write(tmp_path / "u.toml", text), default_plugin=CACHING_SHA2_PASSWORD)

    def login(password: str, user: str = "a") -> list[str]:
        s = ServerAuth.for_store(users, user=user, host="h", scramble=SCRAMBLE, secure=True)
        return run(s, ClientAuth(password, SCRAMBLE, NATIVE_PASSWORD, True)).trace

    full = ["switch caching_sha2_password", "more b'\\x04'", "client b'pw\\x00'", "ok"]
    assert login("pw") == full
    assert login("pw") == ["switch caching_sha2_password", "more b'\\x03'", "ok"]
    assert login("bad")[-1] == "err 1045"
    assert login("pw", user="ghost")[-1] == "err 1045"


def test_plaintext_password_refused(tmp_path: Path) -> None:
    with pytest.raises(UsersFileError) as e:
        parse_users('[users.bob]\npassword = "hunter2"\n', "u.toml")
    msg = str(e.value)
    assert "'bob'" in msg and "'password'" in msg and "plaintext" in msg
    assert "hunter2" not in msg


def test_unknown_keys_named() -> None:
    with pytest.raises(UsersFileError, match=r"'bob'.*\['hosts', 'pasword'\]"):
        parse_users("[users.bob]\n" + entry("x") + 'pasword = "x"\nhosts = "%"\n')
    with pytest.raises(UsersFileError, match=r"\['user'\]"):
        parse_users('[user.bob]\npassword_native = ""\n')


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('password_native = "6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"', "password_native"),
        ('password_native = "*XYZ"', "password_native"),
        ('password_sha2 = "$5$salt$hash"', "password_sha2"),
        ('password_sha2 = "pbkdf2-sha256$10$c2FsdHNhbHQ=$' + "A" * 43 + '="', "iterations"),
        ("password_native = 42", "must be a string"),
        ('plugin = "mysql_native_password"', "password_native and/or password_sha2"),
        (
            'password_native = ""\npassword_sha2 = "pbkdf2-sha256$1000$c2FsdHNhbHQ=$'
            + "A" * 43
            + '="',
            "empty",
        ),
        (entry("x") + 'plugin = "client_ed25519"', "unknown plugin"),
        (
            'password_sha2 = "'
            + str(Pbkdf2Verifier.create("x", 1000))
            + '"\nplugin = "mysql_native_password"',
            "SHA1",
        ),
    ],
)
def test_bad_entries(text: str, match: str) -> None:
    with pytest.raises(UsersFileError, match=match) as e:
        parse_users("[users.bob]\n" + text + "\n", "u.toml")
    assert str(e.value).startswith("u.toml: user 'bob'")


def test_bad_documents() -> None:
    with pytest.raises(UsersFileError, match="not valid TOML"):
        parse_users("[users.bob\n", "u.toml")
    with pytest.raises(UsersFileError, match="table"):
        parse_users('users = "x"\n')
    with pytest.raises(UsersFileError, match="table"):
        parse_users('[users]\nbob = "x"\n')
    assert parse_users("") == {}


def test_empty_password_is_explicit() -> None:
    users = parse_users('[users.a]\npassword_native = ""\n[users.b]\npassword_sha2 = ""\n')
    assert users["a"].empty_password and users["a"].plugin == NATIVE_PASSWORD
    assert users["b"].empty_password and users["b"].plugin == CACHING_SHA2_PASSWORD
    assert verify_password(users["a"], "") and not verify_password(users["a"], "x")
    s = ServerAuth(user="a", host="h", account=users["a"], scramble=SCRAMBLE, secure=False)
    assert run(s, ClientAuth("", SCRAMBLE, NATIVE_PASSWORD, False)).trace == ["ok"]


def test_default_plugins() -> None:
    sha2_only = f'[users.a]\npassword_sha2 = "{Pbkdf2Verifier.create("pw", 1000)}"\n'
    assert parse_users(sha2_only)["a"].plugin == CACHING_SHA2_PASSWORD
    assert parse_users("[users.a]\n" + entry("pw"))["a"].plugin == NATIVE_PASSWORD
    clear = parse_users("[users.a]\n" + entry("pw", plugin=CLEAR_PASSWORD))["a"]
    assert clear.plugin == CLEAR_PASSWORD


def test_hash_password() -> None:
    values = hash_password("pw", plugin=CACHING_SHA2_PASSWORD)
    assert set(values) == {"password_native", "password_sha2", "plugin"}
    assert values["password_native"] == "*" + native_double_sha1("pw").hex().upper()
    acct = parse_users("[users.a]\n" + "".join(f'{k} = "{v}"\n' for k, v in values.items()))["a"]
    assert verify_password(acct, "pw") and not verify_password(acct, "px")
    assert hash_password("") == {"password_native": "", "password_sha2": ""}
    with pytest.raises(ValueError):
        hash_password("pw", plugin="nope")


def test_reload_replaces_users_and_drops_stale_cache(tmp_path: Path) -> None:
    path = write(tmp_path / "u.toml", "[users.a]\n" + entry("one") + "[users.b]\n" + entry("b"))
    users = StaticUsers(path)
    a, b = users.account("a"), users.account("b")
    assert a is not None and b is not None
    users.sha2_cache().put(a, b"x" * 32)
    users.sha2_cache().put(b, b"y" * 32)
    write(
        path,
        "[users.a]\n" + entry("two") + "[users.b]\n" + path.read_text().split("[users.b]\n")[1],
    )
    users.reload()
    new_a = users.account("a")
    assert new_a is not None and verify_password(new_a, "two")
    assert users.account("b") == b
    assert users.sha2_cache().get(b) == b"y" * 32  # unchanged user keeps the fast path
    assert users.sha2_cache().get(new_a) is None and len(users.sha2_cache()) == 1


@pytest.mark.parametrize(
    "broken",
    ["[users.a\n", '[users.a]\npassword = "plain"\n', '[users.a]\nextra = "x"\n'],
)
def test_broken_reload_keeps_old_users(tmp_path: Path, broken: str) -> None:
    path = write(tmp_path / "u.toml", "[users.a]\n" + entry("one"))
    users = StaticUsers(path)
    before = users.users
    write(path, broken)
    with pytest.raises(UsersFileError):
        users.reload()
    assert users.users is before
    acct = users.account("a")
    assert acct is not None and verify_password(acct, "one")


def test_missing_file_and_bad_default_plugin(tmp_path: Path) -> None:
    with pytest.raises(UsersFileError, match="cannot read"):
        StaticUsers(tmp_path / "nope.toml")
    with pytest.raises(ValueError, match="default auth plugin"):
        StaticUsers(write(tmp_path / "u.toml", ""), default_plugin="dialog")
    with pytest.raises(UsersFileError, match="user names"):
        parse_users('[users.""]\npassword_native = ""\n')
