"""A data request answered in full (issue 25, case 8): besides the recordings, devices and
marks, the export carries the owner's access log, passkeys and sessions (metadata, no
secrets), their devices' presence, the deletion records that explain chain gaps, and the
Art. 15 statement rendered from the operator's settings (defaults marked as such), in
your-data.json for machines and in the readable index; verify-export checks them like the
others, and nothing in them is anyone else's. On both backends."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from earmark.cloud.ingest.ingestor import Ingestor
from earmark.cloud.owner.erasure import delete_clip
from earmark.cloud.owner.export import export_owner
from earmark.cloud.owner.signing import key_text, signing_key
from earmark.cloud.owner.statement import UNSET, DataRequest
from earmark.cloud.owner.verify_export import verify_export
from earmark.cloud.settings import DataRequestSettings
from earmark.cloud.store.portal import Passkey
from earmark.cloud.store.store import Store
from tests.support.cloudkit import enrolled_device

SETTINGS = DataRequestSettings(controller="Example Haushalt GmbH, Hauptstr. 1, 10115 Berlin",
                               contact="privacy@example.org", authority="Berliner Beauftragte für Datenschutz")


def test_the_export_answers_a_data_request_in_full(store: Store, tmp_path: Path) -> None:
    alice, bob = enrolled_device(store, "Alice"), enrolled_device(store, "Bob")
    outcomes = Ingestor(store).handle_batch([(alice.topic, alice.clip(seed=n, seconds=0.25)) for n in range(3)]
                                            + [(bob.topic, bob.clip(seed=9, seconds=0.25))])
    assert {o.status for o in outcomes} == {"stored"}
    first, second, _ = sorted(store.clips.of_owner(alice.owner_id), key=lambda c: c.seq or 0)
    delete_clip(store, alice.owner_id, first.clip_id)
    store.clips.mark(alice.owner_id, second.clip_id, "not_meant")
    passkey = Passkey("credential-secret-id", alice.owner_id, b"public-key-bytes", 0)
    assert store.portal.register(store.portal.invite(alice.owner_id, 900), passkey)
    token, session = store.portal.sign_in(passkey, 3, "198.51.100.7")
    assert store.presence.record(alice.device_id, b'{"state": "online", "mic": "open"}')
    store.registry.set_retention(alice.owner_id, 540)

    archive = export_owner(store, alice.owner_id, tmp_path / "out", request=DataRequest(SETTINGS, 365)).path
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        data = json.loads(zf.read("your-data.json"))
        statement = zf.read("statement.txt").decode()
        index = zf.read("index.html").decode()
        everything = b"".join(zf.read(n) for n in names if not n.endswith(".wav"))
    assert {"your-data.json", "statement.txt"} <= names
    assert data["owner_id"] == alice.owner_id and data["account"]["display_name"] == "Alice"
    assert data["account"]["auto_delete_days"] == 540
    assert [set(p) for p in data["passkeys"]] == [{"created_at", "sign_count"}]
    assert data["passkeys"][0]["sign_count"] == 3
    assert [set(s) for s in data["sessions"]] == [{"created_at", "seen_at"}]
    assert [d["clip_id"] for d in data["deleted_clips"]] == [first.clip_id]  # the gap at its place in the chain
    events = [e["event"] for e in data["access_log"]]
    assert events.count("clip_stored") == 3 and "clip_deleted" in events and "portal_signed_in" in events
    assert all(e.get("hash") for e in data["access_log"])
    assert [(p["device_id"], p["online"], p["status"].get("mic")) for p in data["presence"]] == [
        (alice.device_id, True, "open")]
    for secret in (b"credential-secret-id", token.encode(), session.csrf.encode(), b"public-key-bytes"):
        assert secret not in everything  # metadata of her ways in, never the keys themselves
    for stranger in (bob.owner_id.encode(), bob.device_id.encode()):
        assert stranger not in everything  # nothing of Bob's
    # Art. 15(1)(a)-(h): what the operator set, and marked defaults for what it did not.
    assert "Example Haushalt GmbH" in statement and "privacy@example.org" in statement
    assert "Berliner Beauftragte" in statement
    assert "deleted 365 days after it was made (the service's limit)" in statement  # shorter than her 540
    for heading in ("(a) Why", "(b) What", "(c) Who receives", "(d) How long", "(e) Your rights",
                    "(f) Where to complain", "(g) Where the data came from", "(h) Automated decisions"):
        assert heading in statement
    assert statement.count(UNSET) == 2  # purposes and recipients were left to their defaults
    assert "About your data" in index and "Example Haushalt GmbH" in index and '<time datetime="' in index

    assert verify_export(store, archive, alice.owner_id) == []
    assert verify_export(None, archive, alice.owner_id, keys=[key_text(signing_key(store).verify_key)]) == []


def test_verify_export_checks_the_data_request_files(store: Store, tmp_path: Path) -> None:
    alice = enrolled_device(store, "Alice")
    assert Ingestor(store).handle(alice.topic, alice.clip(seed=1, seconds=0.25)).status == "stored"
    archive = export_owner(store, alice.owner_id, tmp_path / "out").path
    for name, edit in (("your-data.json", lambda d: d.replace(b'"access_log"', b'"access_log_"')),
                       ("statement.txt", lambda d: d.replace(b"(c) Who receives", b"(c) Nobody receives"))):
        forged = tmp_path / f"forged-{name}.zip"
        with zipfile.ZipFile(archive) as src, zipfile.ZipFile(forged, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                dst.writestr(info, edit(src.read(info)) if info.filename == name else src.read(info))
        problems = verify_export(store, forged, alice.owner_id)
        assert f"{name} was changed after the archive was signed" in problems, problems
    dropped = tmp_path / "dropped.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(dropped, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if info.filename != "your-data.json":
                dst.writestr(info, src.read(info))
    assert "your-data.json is missing" in verify_export(store, dropped, alice.owner_id)
