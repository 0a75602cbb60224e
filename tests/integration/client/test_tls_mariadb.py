"""The client's TLS upgrade (SSLRequest, startTLS, login over TLS) against a fresh MariaDB
started with a CA and server certificate made by the test; stopped at the end."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.trial import unittest

from tests.integration.client.support import connect_to
from tests.support import servers
from vtwist.local.mariadb import MariaDB
from vtwist.protocols.mysql.errors import MySQLError

pytestmark = [
    pytest.mark.integration,
    # Twisted's TLS options still hand pyOpenSSL objects to pyOpenSSL: not ours to fix.
    pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning"),
]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca_key: rsa.RSAPrivateKey, ca: x509.Certificate
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


class TLSTests(unittest.TestCase):
    timeout = 120
    db: MariaDB
    ca_pem: bytes

    @classmethod
    def setUpClass(cls) -> None:
        base = servers.scratch_dir("mariadb-tls")
        ca_key, ca = make_ca("vtwist test CA")
        key, cert = make_server_cert(ca_key, ca)
        certs = Path(base) / "certs"
        certs.mkdir()
        (certs / "ca.pem").write_bytes(pem(ca))
        (certs / "server.pem").write_bytes(pem(cert))
        (certs / "server-key.pem").write_bytes(key_pem(key))
        cls.ca_pem = pem(ca)
        cls.db = MariaDB(
            Path(base) / "db",
            extra_args=[
                f"--ssl-ca={certs / 'ca.pem'}",
                f"--ssl-cert={certs / 'server.pem'}",
                f"--ssl-key={certs / 'server-key.pem'}",
            ],
        ).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.db.destroy()

    def options(self, ca_pem: bytes | None = None) -> IOpenSSLClientConnectionCreator:
        trust = ssl.Certificate.loadPEM(ca_pem or self.ca_pem)
        return ssl.optionsForClientTLS("127.0.0.1", trustRoot=trust)

    def test_login_and_queries_over_tls(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._over_tls())

    async def _over_tls(self) -> None:
        admin = await connect_to(self.db, tls=self.options())
        self.addCleanup(admin.close)
        assert admin.tls
        r = await admin.query("SHOW SESSION STATUS LIKE 'Ssl_version'")
        assert r.rows[0][1].startswith(b"TLSv1.")
        await admin.query("DROP USER IF EXISTS secure@'127.0.0.1'")
        await admin.query("CREATE USER secure@'127.0.0.1' IDENTIFIED BY 'pw' REQUIRE SSL")
        # A user that requires TLS logs in over TLS and is refused without it.
        c = await connect_to(
            self.db, user="secure", password="pw", database=None, tls=self.options()
        )
        self.addCleanup(c.close)
        assert (await c.query("SELECT CURRENT_USER()")).rows == [[b"secure@127.0.0.1"]]
        big = await c.query("SELECT REPEAT('t', 3000000)")
        assert big.rows[0][0] == b"t" * 3000000
        stmt = await c.prepare("SELECT ? + 1")
        assert (await c.execute(stmt, [41])).rows == [[42]]
        with pytest.raises(MySQLError) as info:
            await connect_to(self.db, user="secure", password="pw", database=None)
        assert info.value.code == 1045

    def test_untrusted_server_certificate_is_2026(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._untrusted())

    async def _untrusted(self) -> None:
        _, other_ca = make_ca("some other CA")
        with pytest.raises(MySQLError) as info:
            await connect_to(self.db, tls=self.options(pem(other_ca)))
        assert info.value.code == 2026 and "SSL connection error" in info.value.message
