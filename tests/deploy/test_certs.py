"""fedsim deploy certs / keys: the certificate chain and subjectAltName, key modes, and keys in
the form Flower's own loaders accept; bad input is one line, exit 2."""

from __future__ import annotations

import argparse
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.deploy.certs import DeployError, parse_hosts, write_certs, write_node_keys

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_certs_cli_writes_a_ca_and_a_server_certificate_for_the_hosts(tmp_path: Path) -> None:
    # Execute
    result = runner.invoke(app, ["deploy", "certs", "--hosts", "127.0.0.1,server.local", str(tmp_path / "c")])
    # Assert
    assert result.exit_code == 0, result.output
    folder = tmp_path / "c"
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((folder / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["server.local"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # the private keys are the certificates' keys, readable by the owner only
    for cert, key in ((ca, "ca.key"), (server, "server.key")):
        private = serialization.load_pem_private_key((folder / key).read_bytes(), None)
        assert private.public_key().public_numbers() == cert.public_key().public_numbers()
        assert mode(folder / key) == 0o600
    assert mode(folder / "ca.crt") == mode(folder / "server.crt") == 0o644


def test_keys_cli_writes_pairs_that_flowers_own_loaders_accept(tmp_path: Path) -> None:
    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supernode.cli.flower_supernode import _try_setup_client_authentication

    # Execute
    result = runner.invoke(app, ["deploy", "keys", "--nodes", "3", str(tmp_path / "k")])
    # Assert
    assert result.exit_code == 0, result.output
    folder = tmp_path / "k"
    assert sorted(p.name for p in folder.iterdir()) == [f"supernode-{i}.{e}" for i in (1, 2, 3) for e in ("key", "pub")]
    publics = set()
    for i in (1, 2, 3):
        key, pub = folder / f"supernode-{i}.key", folder / f"supernode-{i}.pub"
        assert mode(key) == 0o600 and mode(pub) == 0o644
        # flower-supernode --auth-supernode-private-key reads it like this
        private, public = _try_setup_client_authentication(
            argparse.Namespace(auth_supernode_private_key=str(key), auth_supernode_public_key=None))
        assert isinstance(private.curve, ec.SECP384R1)
        # flwr supernode register KEY.pub reads it like this, and it is the private key's public half
        registered = try_load_public_key(pub)
        assert serialization.load_pem_public_key(registered).public_numbers() == public.public_numbers()
        assert pub.read_text().startswith("ecdsa-sha2-nistp384 ")
        publics.add(registered)
    assert len(publics) == 3  # three different boxes


def test_more_keys_start_after_the_existing_ones_and_nothing_is_overwritten(tmp_path: Path) -> None:
    # Prepare
    write_node_keys(tmp_path, 2)
    first = (tmp_path / "supernode-1.key").read_bytes()
    # Execute: add a box
    pairs = write_node_keys(tmp_path, 1, start=3)
    # Assert
    assert [p.name for p in pairs[0]] == ["supernode-3.key", "supernode-3.pub"]
    with pytest.raises(DeployError, match="supernode-2.key exists"):
        write_node_keys(tmp_path, 2, start=2)
    assert (tmp_path / "supernode-1.key").read_bytes() == first and not (tmp_path / "supernode-4.key").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["certs", "--hosts", "127.0.0.1,bad_host!", "OUT"], "'bad_host!' is neither an IP address nor a DNS name"),
    (["certs", "--hosts", " , ", "OUT"], "give at least one host"),
    (["certs", "--hosts", "127.0.0.1", "EXISTING"], "ca.crt exists"),
    (["keys", "--nodes", "0", "OUT"], "--nodes: 0 is not within 1..10000"),
    (["keys", "--nodes", "1", "FILE"], "is a file; give a folder"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    # Prepare
    write_certs(tmp_path / "EXISTING", ["127.0.0.1"])
    (tmp_path / "FILE").write_text("x")
    args = [str(tmp_path / a) if a in ("OUT", "EXISTING", "FILE") else a for a in args]
    # Execute
    result = runner.invoke(app, ["deploy", *args])
    # Assert
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


def test_hosts_are_ip_addresses_or_dns_names() -> None:
    assert parse_hosts("127.0.0.1, ::1,server.local,localhost") == ["127.0.0.1", "::1", "server.local", "localhost"]
    for bad in ("-x.local", "a..b", "a b"):
        with pytest.raises(DeployError):
            parse_hosts(bad)
