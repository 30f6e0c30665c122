"""Who a revision names (issue 14): with CURVE on, the name of the client's authorized key,
whatever user name the client claims; without it, the user name the client sends, marked as
not authenticated. A real runtime and real ZeroMQ sockets."""

from __future__ import annotations

from pathlib import Path

from support import file_group, free_port

from actors.remote import CurveClientConfig, RemoteRef, generate_keypair, load_keypair
from infrakit import Runtime
from infrakit.paths import GROUP_SOCKET


def test_with_curve_the_key_name_is_who_made_the_revision(home: Path, tmp_path: Path) -> None:
    keys, authorized = tmp_path / "keys", tmp_path / "authorized"
    authorized.mkdir()
    _, server_secret = generate_keypair(keys, "server")
    alice_public, alice_secret = generate_keypair(keys, "alice")
    Path(alice_public).rename(authorized / "alice.key")
    port = free_port()
    config = {
        "Manager": {
            "Listen": [f"tcp://127.0.0.1:{port}"],
            "Curve": {"SecretKey": server_secret, "AuthorizedKeys": str(authorized)},
        }
    }
    public, private = load_keypair(alice_secret)
    assert private is not None
    curve = CurveClientConfig(public, private, load_keypair(keys / "server.key")[0])
    with Runtime(config, home=home):
        client = RemoteRef(f"tcp://127.0.0.1:{port}", timeout=10.0, curve=curve)
        try:
            done = client.call("Group.CommitGroup", {"Spec": file_group(), "User": "mallory"})
            assert done["Revision"] == 1
            history = client.call("Group.History", {"ID": "cattle"})
        finally:
            client.close()
    (revision,) = history["Revisions"]
    assert (revision["Who"], revision["Authenticated"]) == ("alice", True)


def test_without_curve_the_user_the_client_sends_is_recorded_unauthenticated(
    home: Path,
) -> None:
    with Runtime(home=home) as runtime:
        client = RemoteRef(f"ipc://{runtime.plugins_dir / GROUP_SOCKET}", timeout=10.0)
        try:
            client.call("Group.CommitGroup", {"Spec": file_group(), "User": "bob"})
            client.call("Group.CommitGroup", {"Spec": file_group(size=3)})
            history = client.call("Group.History", {"ID": "cattle"})
        finally:
            client.close()
    first, second = history["Revisions"]
    assert (first["Who"], first["Authenticated"]) == ("bob", False)
    assert (second["Who"], second["Change"]) == ("unknown", "size 2 -> 3")


def test_a_cluster_file_group_is_a_revision_by_the_cluster_file(home: Path) -> None:
    with Runtime({"Groups": [file_group()]}, home=home) as runtime:
        (revision,) = runtime.history("cattle")["Revisions"]
    assert (revision["Revision"], revision["Who"]) == (1, "cluster file")
