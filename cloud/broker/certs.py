"""`earmark-cloud ca init` / `ca issue`: a small private CA for the broker's TLS listener and,
optionally, client certificates, made with the `cryptography` package. Keys are written
0600; certificates are public."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from earmark.runtime.durable import write_file
from earmark.wire.errors import UsageError

CA_DAYS = 3650
LEAF_DAYS = 825


class CertError(UsageError, RuntimeError):
    """A certificate or CA that cannot be made or read; the message says which."""


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_file(path, data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ca_paths(ca_dir: Path) -> tuple[Path, Path]:
    return ca_dir / "ca.pem", ca_dir / "ca.key"


def init_ca(ca_dir: Path, name: str = "Earmark private CA") -> bool:
    """Make the CA if there is none. Returns True if made."""
    cert_path, key_path = ca_paths(ca_dir)
    if cert_path.exists() and key_path.exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return True


def issue(ca_dir: Path, name: str, out_dir: Path, hosts: list[str] | None = None,
          server: bool = True) -> tuple[Path, Path]:
    """A leaf certificate signed by the CA: for a server (with `hosts` as subject alternative
    names) or a client. Returns (cert path, key path) in `out_dir`."""
    cert_path, key_path = ca_paths(ca_dir)
    if not key_path.exists():
        raise CertError(f"no CA in {ca_dir}: run `earmark-cloud ca init` first")
    ca_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{key_path} is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if server:
        names: list[x509.GeneralName] = []
        for host in hosts or ["localhost", "127.0.0.1"]:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    out_dir.mkdir(parents=True, exist_ok=True)
    leaf_cert, leaf_key = out_dir / f"{name}.pem", out_dir / f"{name}.key"
    _write_private(leaf_key, _key_pem(key))
    leaf_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return leaf_cert, leaf_key
