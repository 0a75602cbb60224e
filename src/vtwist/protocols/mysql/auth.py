"""MySQL authentication, sans-IO: the password math and the exchanges of both sides.

This module owns
- the scramble math of ``mysql_native_password`` and ``caching_sha2_password``, the RSA
  (OAEP/SHA1) wrapping of a password for full authentication over plain TCP, and the
  PBKDF2 verifier that stands for a ``caching_sha2_password`` account at rest;
- ``Account`` (what a user store knows about a user) and ``Sha2Cache`` (the in-memory
  ``user -> SHA256(SHA256(password))`` cache behind the sha2 fast path);
- ``ServerAuth``: the server's side of one authentication exchange, fed with the client's
  auth-data payloads and answering with ``Step`` values (send a switch, send more data,
  success, failure);
- ``ClientAuth``: the client's side, for the tablet's connections to mysqld.

Both machines exchange plain bytes: the payloads of HandshakeResponse (auth response),
AuthSwitchRequest / AuthSwitchResponse and AuthMoreData (the bytes *after* the ``0x01``
marker). Framing and sequence ids belong to ``packets``/``connection``. Nothing here
imports Twisted.

Security choices: every comparison involving a secret goes through
``hmac.compare_digest``; an unknown user runs the same exchange as a known one (with a
random decoy account) and fails with the same ER_ACCESS_DENIED; every cleartext check
costs one PBKDF2 run, whatever verifiers the account has, so full authentication does not
reveal which users exist by its duration. One residual leak is shared with MySQL: an
account whose plugin differs from the default answers with an auth switch where an
unknown user does not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vtwist.protocols.mysql.constants import (
    CACHING_SHA2_PASSWORD,
    CLEAR_PASSWORD,
    NATIVE_PASSWORD,
)
from vtwist.protocols.mysql.errors import ErrorCode, LocalProtocolError, MySQLError

if TYPE_CHECKING:
    from vtwist.interfaces import IAuthServer

SCRAMBLE_LENGTH = 20
SHA2_DIGEST_LENGTH = 32
SUPPORTED_PLUGINS = frozenset({NATIVE_PASSWORD, CACHING_SHA2_PASSWORD, CLEAR_PASSWORD})

# caching_sha2_password AuthMoreData bodies and client requests.
FAST_AUTH_SUCCESS = b"\x03"
PERFORM_FULL_AUTH = b"\x04"
REQUEST_PUBLIC_KEY = b"\x02"

# PBKDF2-SHA256 verifier: ~2 ms per check at 10k iterations on this project's machines.
# The check runs on the reactor thread, once per user per gate process (then the fast path
# serves), so the bounds keep a misconfigured file from stalling the gate.
DEFAULT_PBKDF2_ITERATIONS = 10_000
MIN_PBKDF2_ITERATIONS = 1_000
MAX_PBKDF2_ITERATIONS = 1_000_000
PBKDF2_PREFIX = "pbkdf2-sha256"

RSA_KEY_BITS = 2048
DEFAULT_SHA2_CACHE_SIZE = 10_000

# Client-side error numbers (CR_*) not in errors.ErrorCode.
CR_AUTH_PLUGIN_CANNOT_LOAD = 2059
CR_AUTH_PLUGIN_ERR = 2061

Password = str | bytes


def _pw(password: Password) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else password


def _xor(data: bytes, key: bytes) -> bytes:
    """``data`` XOR ``key`` repeated to ``data``'s length."""
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data))


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def make_scramble() -> bytes:
    """A fresh 20-byte scramble (nonce) for a greeting.

    Printable ASCII only, as MySQL does: some clients read the greeting's second scramble
    part as a NUL-terminated string, so it must contain no NUL byte.
    """
    return bytes(secrets.choice(range(0x21, 0x7F)) for _ in range(SCRAMBLE_LENGTH))


# --- mysql_native_password ----------------------------------------------------------------


def native_double_sha1(password: Password) -> bytes:
    """SHA1(SHA1(password)): what a server stores for mysql_native_password."""
    return _sha1(_sha1(_pw(password)))


def native_password_hash(password: Password) -> str:
    """The text form of MySQL's ``PASSWORD()``: ``'*'`` + uppercase hex of SHA1(SHA1(pw))."""
    return "*" + native_double_sha1(password).hex().upper()


def parse_native_hash(text: str) -> bytes:
    """The 20 bytes of a ``PASSWORD()`` string; ``ValueError`` if it is not one."""
    if len(text) != 41 or text[0] != "*":
        raise ValueError("expected '*' followed by 40 hex digits, as MySQL's PASSWORD() prints")
    try:
        return bytes.fromhex(text[1:])
    except ValueError:
        raise ValueError("expected '*' followed by 40 hex digits") from None


def native_password_response(password: Password, scramble: bytes) -> bytes:
    """A client's answer: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))); empty for no password."""
    pw = _pw(password)
    if not pw:
        return b""
    stage1 = _sha1(pw)
    return _xor(stage1, _sha1(scramble + _sha1(stage1)))


def check_native_response(stored_double_sha1: bytes, scramble: bytes, response: bytes) -> bool:
    """Whether ``response`` proves knowledge of the password behind ``stored_double_sha1``.

    Recovers the candidate SHA1(pw) from the response and compares its SHA1 with the
    stored value in constant time.
    """
    if len(response) != 20 or len(stored_double_sha1) != 20:
        return False
    candidate = _xor(response, _sha1(scramble + stored_double_sha1))
    return hmac.compare_digest(_sha1(candidate), stored_double_sha1)


# --- caching_sha2_password ---------------------------------------------------------------


def sha2_double_digest(password: Password) -> bytes:
    """SHA256(SHA256(password)): the value the fast-path cache holds."""
    return _sha256(_sha256(_pw(password)))


def sha2_fast_response(password: Password, scramble: bytes) -> bytes:
    """A client's fast-path answer: XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) + scramble)).

    Empty for an empty password, as clients send.
    """
    pw = _pw(password)
    if not pw:
        return b""
    p1 = _sha256(pw)
    return _xor(p1, _sha256(_sha256(p1) + scramble))


def check_sha2_fast(cached_double_sha256: bytes, scramble: bytes, response: bytes) -> bool:
    """Whether a fast-path ``response`` matches the cached SHA256(SHA256(pw)), constant time."""
    if len(response) != SHA2_DIGEST_LENGTH or len(cached_double_sha256) != SHA2_DIGEST_LENGTH:
        return False
    candidate = _xor(response, _sha256(cached_double_sha256 + scramble))
    return hmac.compare_digest(_sha256(candidate), cached_double_sha256)


@dataclass(frozen=True)
class Pbkdf2Verifier:
    """A salted PBKDF2-HMAC-SHA256 verifier, text form ``pbkdf2-sha256$<n>$<salt>$<hash>``.

    Salt and hash are standard base64. This is what a users file stores for
    caching_sha2_password: it cannot feed the fast path, so a full authentication (TLS or
    RSA) is needed once per gate process before the fast path serves that user.
    """

    iterations: int
    salt: bytes = field(repr=False)
    digest: bytes = field(repr=False)

    @classmethod
    def create(
        cls,
        password: Password,
        iterations: int = DEFAULT_PBKDF2_ITERATIONS,
        salt: bytes | None = None,
    ) -> Pbkdf2Verifier:
        """Hash ``password`` with a fresh 16-byte salt (or ``salt``)."""
        salt = secrets.token_bytes(16) if salt is None else salt
        return cls(iterations, salt, hashlib.pbkdf2_hmac("sha256", _pw(password), salt, iterations))

    @classmethod
    def parse(cls, text: str) -> Pbkdf2Verifier:
        """Read the text form; ``ValueError`` saying what is wrong otherwise."""
        parts = text.split("$")
        if len(parts) != 4 or parts[0] != PBKDF2_PREFIX:
            raise ValueError(f"expected '{PBKDF2_PREFIX}$<iterations>$<salt>$<hash>'")
        try:
            iterations = int(parts[1])
            salt = base64.b64decode(parts[2], validate=True)
            digest = base64.b64decode(parts[3], validate=True)
        except (ValueError, binascii.Error):
            raise ValueError("iterations must be decimal, salt and hash base64") from None
        if not MIN_PBKDF2_ITERATIONS <= iterations <= MAX_PBKDF2_ITERATIONS:
            raise ValueError(
                f"iterations must be between {MIN_PBKDF2_ITERATIONS} and "
                f"{MAX_PBKDF2_ITERATIONS} (checks run on the reactor thread)"
            )
        if len(salt) < 8 or len(digest) != SHA2_DIGEST_LENGTH:
            raise ValueError("salt must be at least 8 bytes and the hash 32 bytes")
        return cls(iterations, salt, digest)

    def __str__(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        digest = base64.b64encode(self.digest).decode("ascii")
        return f"{PBKDF2_PREFIX}${self.iterations}${salt}${digest}"

    def verify(self, password: Password) -> bool:
        """Whether ``password`` matches, compared in constant time."""
        candidate = hashlib.pbkdf2_hmac("sha256", _pw(password), self.salt, self.iterations)
        return hmac.compare_digest(candidate, self.digest)


# --- RSA for full authentication over plain TCP --------------------------------------------

_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


@dataclass(frozen=True)
class RsaKey:
    """The server's RSA key pair and the PEM public key it hands to clients that ask."""

    private_key: rsa.RSAPrivateKey
    public_pem: bytes

    @classmethod
    def from_private_key(cls, key: rsa.RSAPrivateKey) -> RsaKey:
        """Wrap ``key`` (at least 2048 bits)."""
        if key.key_size < RSA_KEY_BITS:
            raise ValueError(f"RSA key has {key.key_size} bits; use at least {RSA_KEY_BITS}")
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key, pem)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (to save it; keep the file mode 0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def generate_rsa_key(bits: int = RSA_KEY_BITS) -> RsaKey:
    """A fresh key pair (tens of milliseconds: do it at start-up, not per connection)."""
    return RsaKey.from_private_key(rsa.generate_private_key(public_exponent=65537, key_size=bits))


def load_rsa_key(pem: bytes, passphrase: bytes | None = None) -> RsaKey:
    """Load a PEM private key; ``ValueError`` if it is not an RSA key of 2048+ bits."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except (TypeError, UnsupportedAlgorithm) as e:
        raise ValueError(f"cannot load the RSA private key: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the caching_sha2_password key must be an RSA private key")
    return RsaKey.from_private_key(key)


def rsa_encrypt_password(password: Password, scramble: bytes, public_key_pem: bytes) -> bytes:
    """What a client sends: RSA-OAEP(SHA1) of (password + NUL) XOR the repeated scramble."""
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except UnsupportedAlgorithm as e:
        raise ValueError(f"cannot load the server's public key: {e}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the server's public key is not an RSA key")
    return key.encrypt(_xor(_pw(password) + b"\0", scramble), _OAEP)


def rsa_decrypt_password(
    private_key: RsaKey | rsa.RSAPrivateKey, ciphertext: bytes, scramble: bytes
) -> bytes:
    """The cleartext password inside ``ciphertext`` (``ValueError`` if it does not decrypt)."""
    key = private_key.private_key if isinstance(private_key, RsaKey) else private_key
    plain = _xor(key.decrypt(ciphertext, _OAEP), scramble)
    if not plain.endswith(b"\0"):
        raise ValueError("decrypted password is not NUL-terminated")
    return plain[:-1]


# --- accounts and the fast-path cache --------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """What a user store knows about one user.

    ``plugin`` is the account's preferred plugin (the server switches a client to it).
    ``native_hash`` is SHA1(SHA1(pw)) (required for mysql_native_password);
    ``sha2_verifier`` checks a cleartext password (full auth, clear password).
    ``empty_password`` marks an account whose password is empty; it then has no verifier.
    """

    user: str
    plugin: str = NATIVE_PASSWORD
    native_hash: bytes | None = field(default=None, repr=False)  # kept out of logs
    sha2_verifier: Pbkdf2Verifier | None = field(default=None, repr=False)
    empty_password: bool = False

    def __post_init__(self) -> None:
        if self.plugin not in SUPPORTED_PLUGINS:
            raise ValueError(f"unsupported auth plugin {self.plugin!r}")
        has_verifier = self.native_hash is not None or self.sha2_verifier is not None
        if self.empty_password and has_verifier:
            raise ValueError("an account with an empty password has no password hashes")
        if not self.empty_password and not has_verifier:
            raise ValueError("an account needs a password hash (or an explicit empty password)")
        if self.native_hash is not None and len(self.native_hash) != 20:
            raise ValueError("native_hash must be the 20 bytes of SHA1(SHA1(password))")
        if self.plugin == NATIVE_PASSWORD and not self.empty_password and not self.native_hash:
            raise ValueError("mysql_native_password needs the SHA1(SHA1(password)) hash")


_DECOY_VERIFIER = Pbkdf2Verifier(
    DEFAULT_PBKDF2_ITERATIONS, secrets.token_bytes(16), secrets.token_bytes(32)
)


def decoy_account(user: str, plugin: str) -> Account:
    """A random account for an unknown user: its exchange runs like a real one and fails."""
    return Account(user, plugin, secrets.token_bytes(20), _DECOY_VERIFIER)


def verify_password(account: Account, password: Password) -> bool:
    """Check a cleartext password against every verifier ``account`` has.

    Always costs exactly one PBKDF2 run (a decoy one when the account stores no PBKDF2
    verifier), so the time taken does not tell accounts apart.
    """
    pw = _pw(password)
    verifier = account.sha2_verifier or _DECOY_VERIFIER
    ok = verifier.verify(pw) and account.sha2_verifier is not None
    if account.native_hash is not None:
        native_ok = hmac.compare_digest(native_double_sha1(pw), account.native_hash)
        ok = native_ok if account.sha2_verifier is None else ok and native_ok
    if account.empty_password:
        ok = hmac.compare_digest(pw, b"")
    return ok


class Sha2Cache:
    """``user -> SHA256(SHA256(pw))`` after a successful full auth; bounded, oldest evicted.

    An entry is valid only for the exact ``Account`` it was made for: after a users-file
    reload that changes a user, ``get`` misses and the next login does a full auth again.
    """

    def __init__(self, max_entries: int = DEFAULT_SHA2_CACHE_SIZE) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Account, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, account: Account) -> bytes | None:
        """The cached digest for ``account``, or ``None``."""
        entry = self._entries.get(account.user)
        return entry[1] if entry is not None and entry[0] == account else None

    def put(self, account: Account, digest: bytes) -> None:
        """Remember ``digest`` for ``account`` (evicting the oldest entry when full)."""
        self._entries.pop(account.user, None)
        self._entries[account.user] = (account, digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def retain(self, accounts: Mapping[str, Account]) -> None:
        """Drop entries whose account is no longer exactly in ``accounts`` (after a reload)."""
        for user, (account, _) in list(self._entries.items()):
            if accounts.get(user) != account:
                del self._entries[user]


# --- the server's side of the exchange -----------------------------------------------------


@dataclass(frozen=True)
class SendSwitch:
    """Send AuthSwitchRequest: ``plugin`` name and its ``data`` (scramble + NUL)."""

    plugin: str
    data: bytes


@dataclass(frozen=True)
class SendMoreData:
    """Send AuthMoreData; ``data`` follows the 0x01 marker byte."""

    data: bytes


@dataclass(frozen=True)
class Success:
    """Authenticated. If ``more_data`` is set, send it as AuthMoreData before the OK."""

    user: str
    plugin: str
    account: Account
    more_data: bytes | None = None


@dataclass(frozen=True)
class Failure:
    """Send ``error`` as ERR and close the connection."""

    error: MySQLError


Step = SendSwitch | SendMoreData | Success | Failure


class _State(Enum):
    START = auto()
    SWITCHED = auto()  # waiting for the AuthSwitchResponse
    FULL_AUTH = auto()  # sent 0x04; waiting for a password, a key request or RSA
    RSA = auto()  # sent the public key; waiting for the RSA-encrypted password
    DONE = auto()


class ServerAuth:
    """The server's side of one authentication exchange (sans-IO).

    ``account`` is ``None`` for an unknown user: a decoy account with ``default_plugin``
    runs the same exchange and fails with the same error as a wrong password. Call
    ``start`` with the HandshakeResponse's plugin name and auth response, then ``feed``
    every further client payload until a ``Success`` or ``Failure``.
    """

    def __init__(
        self,
        *,
        user: str,
        host: str,
        account: Account | None,
        scramble: bytes,
        secure: bool,
        default_plugin: str = NATIVE_PASSWORD,
        rsa_key: RsaKey | None = None,
        cache: Sha2Cache | None = None,
    ) -> None:
        if len(scramble) != SCRAMBLE_LENGTH:
            raise ValueError(f"scramble must be {SCRAMBLE_LENGTH} bytes")
        if default_plugin not in SUPPORTED_PLUGINS:
            raise ValueError(f"unsupported default auth plugin {default_plugin!r}")
        self.user = user
        self.host = host
        self.scramble = scramble
        self.secure = secure
        self.rsa_key = rsa_key
        self.cache = cache
        self._known = account is not None
        self.account = account if account is not None else decoy_account(user, default_plugin)
        self.plugin = self.account.plugin
        self._state = _State.START

    @classmethod
    def for_store(
        cls,
        store: IAuthServer,
        *,
        user: str,
        host: str,
        scramble: bytes,
        secure: bool,
        rsa_key: RsaKey | None = None,
    ) -> ServerAuth:
        """An exchange for ``user`` with the account, default plugin and cache of ``store``."""
        return cls(
            user=user,
            host=host,
            account=store.account(user),
            scramble=scramble,
            secure=secure,
            default_plugin=store.default_plugin(),
            rsa_key=rsa_key,
            cache=store.sha2_cache(),
        )

    @property
    def done(self) -> bool:
        """Whether a ``Success`` or ``Failure`` was returned."""
        return self._state is _State.DONE

    def start(self, client_plugin: str, client_response: bytes) -> Step:
        """The HandshakeResponse arrived (an empty plugin name means native, as JDBC sends)."""
        if self._state is not _State.START:
            raise LocalProtocolError("ServerAuth.start called twice")
        if self.plugin == CLEAR_PASSWORD and not self.secure:
            return self._fail_insecure(f"{CLEAR_PASSWORD} sends the password in clear text")
        if (client_plugin or NATIVE_PASSWORD) != self.plugin:
            self._state = _State.SWITCHED
            data = b"" if self.plugin == CLEAR_PASSWORD else self.scramble + b"\0"
            return SendSwitch(self.plugin, data)
        return self._plugin_response(client_response)

    def feed(self, data: bytes) -> Step:
        """The client's next auth payload (switch response, key request, password...)."""
        if self._state is _State.SWITCHED:
            return self._plugin_response(data)
        if self._state is _State.FULL_AUTH:
            if data == REQUEST_PUBLIC_KEY:
                if self.rsa_key is None:
                    return self._fail_insecure(f"{CACHING_SHA2_PASSWORD} without an RSA key")
                self._state = _State.RSA
                return SendMoreData(self.rsa_key.public_pem)
            if self.secure:
                return self._check_cleartext(data[:-1] if data.endswith(b"\0") else data)
            return self._check_rsa(data)
        if self._state is _State.RSA:
            return self._check_rsa(data)
        raise LocalProtocolError(f"ServerAuth.feed called in state {self._state.name}")

    def _plugin_response(self, resp: bytes) -> Step:
        """The first answer for ``self.plugin`` (in the handshake or after a switch)."""
        empty = resp in (b"", b"\0")
        account = self.account
        if self.plugin == NATIVE_PASSWORD:
            if account.empty_password or empty:
                return self._done(account.empty_password and empty, not empty)
            assert account.native_hash is not None  # Account guarantees it for native
            ok = check_native_response(account.native_hash, self.scramble, resp)
            return self._done(ok, True)
        if self.plugin == CLEAR_PASSWORD:
            return self._check_cleartext(resp[:-1] if resp.endswith(b"\0") else resp)
        # caching_sha2_password: an empty password succeeds without the 0x03 marker (some
        # clients choke on it); otherwise try the cache, then full authentication.
        if account.empty_password or empty or len(resp) != SHA2_DIGEST_LENGTH:
            return self._done(account.empty_password and empty, not empty)
        cached = self.cache.get(account) if self.cache is not None else None
        # A decoy check on a miss keeps hit and miss indistinguishable by their cost.
        if check_sha2_fast(cached or secrets.token_bytes(32), self.scramble, resp) and cached:
            return self._done(True, True, more_data=FAST_AUTH_SUCCESS)
        if not self.secure and self.rsa_key is None:
            return self._fail_insecure(f"{CACHING_SHA2_PASSWORD} full authentication")
        self._state = _State.FULL_AUTH
        return SendMoreData(PERFORM_FULL_AUTH)

    def _check_rsa(self, ciphertext: bytes) -> Step:
        if self.rsa_key is None or len(ciphertext) != self.rsa_key.private_key.key_size // 8:
            # Plain TCP without RSA: maybe a cleartext password; never look at it.
            return self._done(False, True)
        try:
            password = rsa_decrypt_password(self.rsa_key, ciphertext, self.scramble)
        except ValueError:
            return self._done(False, True)
        return self._check_cleartext(password)

    def _check_cleartext(self, password: bytes) -> Step:
        ok = verify_password(self.account, password) and self._known
        if ok and self.plugin == CACHING_SHA2_PASSWORD and self.cache is not None:
            self.cache.put(self.account, sha2_double_digest(password))
        return self._done(ok, bool(password))

    def _done(self, ok: bool, password_used: bool, more_data: bytes | None = None) -> Step:
        self._state = _State.DONE
        if ok and self._known:
            return Success(self.user, self.plugin, self.account, more_data)
        return Failure(access_denied(self.user, self.host, password_used))

    def _fail_insecure(self, what: str) -> Failure:
        self._state = _State.DONE
        return Failure(
            MySQLError(
                ErrorCode.SECURE_TRANSPORT_REQUIRED,
                f"Access denied for user '{self.user}'@'{self.host}': {what} needs a TLS "
                "connection; connect with TLS (e.g. --ssl-mode=REQUIRED)",
            )
        )


def access_denied(user: str, host: str, password_used: bool) -> MySQLError:
    """ER_ACCESS_DENIED (1045, 28000) worded exactly as MySQL words it."""
    using = "YES" if password_used else "NO"
    return MySQLError(
        ErrorCode.ACCESS_DENIED,
        f"Access denied for user '{user}'@'{host}' (using password: {using})",
    )


# --- the client's side ----------------------------------------------------------------------


class ClientAuth:
    """The client's side of an exchange with mysqld (sans-IO).

    ``plugin`` is the greeting's plugin; after construction it holds the plugin this client
    answers with (an unknown greeting plugin falls back to native, as libmysqlclient does),
    which goes into the HandshakeResponse. Errors are raised as ``MySQLError``.
    """

    def __init__(
        self,
        password: Password,
        scramble: bytes,
        plugin: str,
        secure: bool,
        server_public_key: bytes | None = None,
        *,
        allow_cleartext: bool = False,
        request_public_key: bool = True,
    ) -> None:
        self.password = _pw(password)
        self.scramble = _strip_nul(scramble)
        self.secure = secure
        self.server_public_key = server_public_key
        self.allow_cleartext = allow_cleartext
        self.request_public_key = request_public_key
        cleartext_ok = plugin == CLEAR_PASSWORD and (secure or allow_cleartext)
        known = plugin in (NATIVE_PASSWORD, CACHING_SHA2_PASSWORD) or cleartext_ok
        self.plugin = plugin if known else NATIVE_PASSWORD
        self._awaiting_key = False

    def initial_response(self) -> bytes:
        """The auth response for the HandshakeResponse."""
        return self._respond()

    def feed_switch(self, plugin: str, data: bytes) -> bytes:
        """AuthSwitchRequest: answer for ``plugin`` with the new scramble in ``data``."""
        if plugin not in SUPPORTED_PLUGINS:
            raise MySQLError(
                ErrorCode.NOT_SUPPORTED_AUTH_MODE,
                f"mysqld asks for auth plugin {plugin!r}, which vtwist's client does not "
                f"support; give the account {NATIVE_PASSWORD} or {CACHING_SHA2_PASSWORD}",
            )
        self.plugin = plugin
        if plugin != CLEAR_PASSWORD:
            self.scramble = _strip_nul(data)
        self._awaiting_key = False
        return self._respond()

    def feed_more_data(self, data: bytes) -> bytes | None:
        """AuthMoreData (bytes after 0x01): what to send next, or ``None`` to await OK/ERR."""
        if self.plugin != CACHING_SHA2_PASSWORD:
            raise _malformed(f"unexpected AuthMoreData during {self.plugin}")
        if self._awaiting_key:
            self._awaiting_key = False
            self.server_public_key = data
            return self._rsa()
        if data == FAST_AUTH_SUCCESS:
            return None
        if data != PERFORM_FULL_AUTH:
            raise _malformed(f"unexpected caching_sha2_password status {data[:1]!r}")
        if self.secure:
            return self.password + b"\0"
        if self.server_public_key is not None:
            return self._rsa()
        if not self.request_public_key:
            raise MySQLError(
                CR_AUTH_PLUGIN_ERR,
                "caching_sha2_password full authentication needs TLS or the server's RSA "
                "public key; enable TLS to mysqld or configure its public key",
            )
        self._awaiting_key = True
        return REQUEST_PUBLIC_KEY

    def _respond(self) -> bytes:
        if self.plugin == NATIVE_PASSWORD:
            return native_password_response(self.password, self.scramble)
        if self.plugin == CACHING_SHA2_PASSWORD:
            return sha2_fast_response(self.password, self.scramble)
        if not (self.secure or self.allow_cleartext):
            raise MySQLError(
                CR_AUTH_PLUGIN_CANNOT_LOAD,
                f"mysqld asks for {CLEAR_PASSWORD} on a connection without TLS; enable TLS "
                "to mysqld (or allow cleartext explicitly)",
            )
        return self.password + b"\0"

    def _rsa(self) -> bytes:
        assert self.server_public_key is not None
        try:
            return rsa_encrypt_password(self.password, self.scramble, self.server_public_key)
        except ValueError as e:
            raise _malformed(f"bad RSA public key from mysqld: {e}") from None


def _strip_nul(data: bytes) -> bytes:
    return data[:-1] if data.endswith(b"\0") else data


def _malformed(what: str) -> MySQLError:
    return MySQLError(ErrorCode.CR_MALFORMED_PACKET, f"Malformed auth exchange: {what}")
