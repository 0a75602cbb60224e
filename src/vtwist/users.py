"""Gate users from a static TOML file: ``StaticUsers`` (an ``IAuthServer``) and ``hash_password``.

File format (see ``etc/users.toml``)::

    [users.app]
    password_native = "*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"  # MySQL's PASSWORD()
    password_sha2 = "pbkdf2-sha256$10000$<salt b64>$<hash b64>"    # optional
    plugin = "mysql_native_password"                               # optional

Only hashes are stored; a plaintext ``password`` key is refused. An empty password is
spelled explicitly as ``password_native = ""`` (and/or ``password_sha2 = ""``).

Why two verifiers. ``mysql_native_password`` needs SHA1(SHA1(pw)) itself: the protocol
checks the client's proof against it, so that is what ``password_native`` holds (as
MySQL's ``mysql.user`` does). For ``caching_sha2_password`` we store a salted PBKDF2-SHA256
verifier rather than SHA256(SHA256(pw)). The double SHA256 would allow the fast path at
once but is unsalted and fast to brute-force; with PBKDF2 the first login of each user per
gate process must be a full authentication (over TLS, or RSA on plain TCP), after which
the in-memory cache holds SHA256(SHA256(pw)) and the fast path serves, as in MySQL. An
account with only ``password_native`` can still use ``caching_sha2_password``: its full
authentication checks the cleartext against SHA1(SHA1(pw)).

``reload()`` re-reads the file and swaps the whole user table at once; a broken file keeps
the previous users. Lookups never touch the disk, so they are safe on the reactor thread.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from vtwist.interfaces import IAuthServer
from vtwist.protocols.mysql.auth import (
    DEFAULT_PBKDF2_ITERATIONS,
    DEFAULT_SHA2_CACHE_SIZE,
    SUPPORTED_PLUGINS,
    Account,
    Password,
    Pbkdf2Verifier,
    Sha2Cache,
    native_password_hash,
    parse_native_hash,
)
from vtwist.protocols.mysql.constants import CACHING_SHA2_PASSWORD, NATIVE_PASSWORD

log = Logger()

USER_KEYS = frozenset({"password_native", "password_sha2", "plugin"})
MAX_USER_NAME_LENGTH = 80  # MariaDB's limit for user names


class UsersFileError(ValueError):
    """The users file cannot be used; the message names the file, the user and the key."""


def hash_password(
    password: Password,
    *,
    iterations: int = DEFAULT_PBKDF2_ITERATIONS,
    plugin: str | None = None,
) -> dict[str, str]:
    """The values of a users-file entry for ``password`` (what ``vtwist users hash`` prints).

    An empty password gives the explicit empty form. ``plugin``, if given, is included.
    """
    pw = password.encode("utf-8") if isinstance(password, str) else password
    entry = {"password_native": "", "password_sha2": ""}
    if pw:
        entry = {
            "password_native": native_password_hash(pw),
            "password_sha2": str(Pbkdf2Verifier.create(pw, iterations)),
        }
    if plugin is not None:
        if plugin not in SUPPORTED_PLUGINS:
            raise ValueError(f"unknown auth plugin {plugin!r}")
        entry["plugin"] = plugin
    return entry


def parse_users(text: str, source: str = "<users>") -> dict[str, Account]:
    """Parse a users file's text into accounts; ``UsersFileError`` naming what is wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsersFileError(f"{source}: not valid TOML: {e}") from None
    extra = sorted(set(doc) - {"users"})
    if extra:
        raise UsersFileError(f"{source}: unknown top-level key(s) {extra}; only [users.<name>]")
    users = doc.get("users", {})
    if not isinstance(users, dict):
        raise UsersFileError(f"{source}: 'users' must be a table of [users.<name>] tables")
    return {name: _parse_user(source, name, entry) for name, entry in users.items()}


def _parse_user(source: str, name: str, entry: Any) -> Account:
    where = f"{source}: user {name!r}"
    if not name or len(name) > MAX_USER_NAME_LENGTH or "\0" in name:
        raise UsersFileError(f"{where}: user names are 1 to {MAX_USER_NAME_LENGTH} characters")
    if not isinstance(entry, dict):
        raise UsersFileError(f"{where}: must be a table ([users.{name}])")
    if "password" in entry:
        raise UsersFileError(
            f"{where}: key 'password' would hold a plaintext password, which is refused; "
            "store hashes instead (password_native / password_sha2 from `vtwist users hash`)"
        )
    unknown = sorted(set(entry) - USER_KEYS)
    if unknown:
        raise UsersFileError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(USER_KEYS)}")
    for key, value in entry.items():
        if not isinstance(value, str):
            raise UsersFileError(f"{where}: key {key!r} must be a string")
    native_text: str | None = entry.get("password_native")
    sha2_text: str | None = entry.get("password_sha2")
    if native_text is None and sha2_text is None:
        raise UsersFileError(
            f"{where}: needs password_native and/or password_sha2 "
            '(an empty password is written password_native = "")'
        )
    empties = {text == "" for text in (native_text, sha2_text) if text is not None}
    if empties == {True, False}:
        raise UsersFileError(
            f"{where}: one of password_native / password_sha2 is empty and the other is not"
        )
    empty = empties == {True}
    try:
        native = parse_native_hash(native_text) if native_text else None
    except ValueError as e:
        raise UsersFileError(f"{where}: key 'password_native': {e}") from None
    try:
        sha2 = Pbkdf2Verifier.parse(sha2_text) if sha2_text else None
    except ValueError as e:
        raise UsersFileError(f"{where}: key 'password_sha2': {e}") from None
    plugin = entry.get(
        "plugin", NATIVE_PASSWORD if native_text is not None else CACHING_SHA2_PASSWORD
    )
    if plugin not in SUPPORTED_PLUGINS:
        raise UsersFileError(
            f"{where}: key 'plugin': unknown plugin {plugin!r}; "
            f"use one of {sorted(SUPPORTED_PLUGINS)}"
        )
    try:
        return Account(name, plugin, native, sha2, empty)
    except ValueError as e:
        raise UsersFileError(f"{where}: {e}") from None


def load_users(path: str | Path) -> dict[str, Account]:
    """Read and parse the users file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsersFileError(f"{path}: cannot read the users file: {e}") from None
    return parse_users(text, str(path))


@implementer(IAuthServer)
class StaticUsers:
    """Users from a TOML file, with the caching_sha2_password fast-path cache.

    ``default_plugin`` is named in the greeting and used for unknown users. A bad file
    raises ``UsersFileError`` from the constructor.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        default_plugin: str = NATIVE_PASSWORD,
        cache_size: int = DEFAULT_SHA2_CACHE_SIZE,
    ) -> None:
        if default_plugin not in SUPPORTED_PLUGINS:
            raise ValueError(
                f"unknown default auth plugin {default_plugin!r}; use one of "
                f"{sorted(SUPPORTED_PLUGINS)}"
            )
        self.path = Path(path)
        self._default_plugin = default_plugin
        self._cache = Sha2Cache(cache_size)
        self._users: Mapping[str, Account] = load_users(self.path)

    @property
    def users(self) -> Mapping[str, Account]:
        """The current accounts by user name (do not mutate)."""
        return self._users

    def reload(self) -> None:
        """Re-read the file and replace all users at once (for SIGHUP).

        On error the previous users stay in force and ``UsersFileError`` is raised (and
        logged). Cache entries of changed or removed users are dropped.
        """
        try:
            users = load_users(self.path)
        except UsersFileError as e:
            log.error(
                "users file reload failed, keeping {count} previous users: {error}",
                count=len(self._users),
                error=str(e),
            )
            raise
        self._users = users
        self._cache.retain(users)
        log.info("users file {path} reloaded: {count} users", path=str(self.path), count=len(users))

    def default_plugin(self) -> str:
        """See ``IAuthServer.default_plugin``."""
        return self._default_plugin

    def account(self, user: str) -> Account | None:
        """See ``IAuthServer.account``."""
        return self._users.get(user)

    def sha2_cache(self) -> Sha2Cache:
        """See ``IAuthServer.sha2_cache``."""
        return self._cache
