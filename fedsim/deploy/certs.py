"""TLS material for a SuperLink and authentication keys for SuperNodes (``cryptography``).

``write_certs(out, hosts)`` writes

* ``ca.crt`` / ``ca.key`` — a self-signed certificate authority (keep ``ca.key`` offline; every
  SuperNode and ``fedsim deploy run`` gets ``ca.crt`` to verify the SuperLink);
* ``server.crt`` / ``server.key`` — the SuperLink's certificate, signed by the CA, whose
  subjectAltName lists every host name and IP address SuperNodes use to reach it (a name
  that is not listed fails verification on the SuperNode).

``write_node_keys(out, nodes)`` writes ``supernode-<i>.key`` / ``supernode-<i>.pub``: ECDSA
P-384 key pairs in OpenSSH format, the form ``flower-supernode --auth-supernode-private-key``
and ``flwr supernode register`` read (the same as ``ssh-keygen -t ecdsa -b 384``).

Private keys are created with mode 0600 (never world- or group-readable, not even briefly);
existing files are never overwritten.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from fedsim.config import ConfigError

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
NODE_KEY, NODE_PUB = "supernode-{i}.key", "supernode-{i}.pub"
VALID_DAYS = 365
MAX_NODES = 10_000


class DeployError(ConfigError):
    """A deployment input the user can fix (bad host, existing file, missing file); exit 2."""


def _crypto():  # type: ignore[no-untyped-def]
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise DeployError("fedsim deploy needs the cryptography package: pip install 'fedsim-ssl[deploy]'") from None
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def parse_hosts(text: str) -> list[str]:
    """``"127.0.0.1,server.local"`` -> the names, checked: IP addresses or DNS names."""
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    if not hosts:
        raise DeployError("--hosts: give at least one host name or IP address, e.g. 127.0.0.1,server.local")
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            labels = host.rstrip(".").split(".")
            if not all(label and len(label) <= 63 and label.replace("-", "").isalnum() and
                       not label.startswith("-") and not label.endswith("-") for label in labels):
                raise DeployError(f"--hosts: {host!r} is neither an IP address nor a DNS name") from None
    return hosts


def _write_new(path: Path, data: bytes, *, private: bool) -> None:
    """Create ``path`` (it must not exist) with mode 0600 for a private key, 0644 otherwise."""
    mode = 0o600 if private else 0o644
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise DeployError(f"{path} exists; choose a new output folder (fedsim never overwrites keys)") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)  # O_CREAT's mode is filtered by the umask; set it exactly


def _check_out(out: Path, names: list[str]) -> None:
    if out.exists() and not out.is_dir():
        raise DeployError(f"{out} is a file; give a folder for the keys")
    taken = [n for n in names if (out / n).exists()]
    if taken:
        raise DeployError(f"{out / taken[0]} exists; choose a new output folder (fedsim never overwrites keys)")
    out.mkdir(parents=True, exist_ok=True)


def write_certs(out: str | Path, hosts: list[str], *, days: int = VALID_DAYS) -> dict[str, Path]:
    """Write a CA and a server certificate for ``hosts`` into ``out``; returns the paths by name."""
    x509, hashes, serialization, ec, eku, name_oid = _crypto()
    out = Path(out)
    _check_out(out, [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY])
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(name_oid.ORGANIZATION_NAME, "fedsim"),
                         x509.NameAttribute(name_oid.COMMON_NAME, "fedsim deployment CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA384()))
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_cert = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(name_oid.ORGANIZATION_NAME, "fedsim"),
                                            x509.NameAttribute(name_oid.COMMON_NAME, hosts[0])]))
                   .issuer_name(ca_name).public_key(server_key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([eku.SERVER_AUTH]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False)
                   .sign(ca_key, hashes.SHA384()))
    pem = serialization.Encoding.PEM

    def key_bytes(key) -> bytes:  # type: ignore[no-untyped-def]
        return key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    paths = {name: out / name for name in (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY)}
    _write_new(paths[CA_KEY], key_bytes(ca_key), private=True)
    _write_new(paths[SERVER_KEY], key_bytes(server_key), private=True)
    _write_new(paths[CA_CERT], ca_cert.public_bytes(pem), private=False)
    _write_new(paths[SERVER_CERT], server_cert.public_bytes(pem), private=False)
    return paths


def write_node_keys(out: str | Path, nodes: int, *, start: int = 1) -> list[tuple[Path, Path]]:
    """Write ``nodes`` SuperNode key pairs (``supernode-<i>.key`` / ``.pub``, i from ``start``)."""
    _, _, serialization, ec, _, _ = _crypto()
    if not 1 <= nodes <= MAX_NODES:
        raise DeployError(f"--nodes: {nodes} is not within 1..{MAX_NODES}")
    if start < 1:
        raise DeployError(f"--start: {start} must be at least 1")
    out = Path(out)
    indices = range(start, start + nodes)
    _check_out(out, [p.format(i=i) for i in indices for p in (NODE_KEY, NODE_PUB)])
    pairs = []
    for i in indices:
        key = ec.generate_private_key(ec.SECP384R1())
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH) + f" supernode-{i}\n".encode()
        key_path, pub_path = out / NODE_KEY.format(i=i), out / NODE_PUB.format(i=i)
        _write_new(key_path, private, private=True)
        _write_new(pub_path, public, private=False)
        pairs.append((key_path, pub_path))
    return pairs
