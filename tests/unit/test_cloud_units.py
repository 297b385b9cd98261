"""The cloud's systemd units agree with deploy/SCALING.md and with the ingester's own
behaviour (issue 13 case 7): the database and broker may be on other hosts, the ingester
speaks the notify protocol, and only configuration errors stop the restarts."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "deploy" / name)
    return parser["Service"]


def test_nothing_confines_the_cloud_to_localhost_when_scaling_md_puts_parts_on_other_hosts() -> None:
    scaling = (ROOT / "deploy" / "SCALING.md").read_text()
    assert "PostgreSQL" in scaling and "RabbitMQ" in scaling  # the parts that live elsewhere at scale
    for name in ("earmark-ingester.service", "earmark-purge.service", "earmark-portal.service"):
        service = unit(name)
        assert service.get("PrivateNetwork", "no") != "yes", name
        assert "localhost" not in service.get("IPAddressAllow", ""), name
        assert "AF_INET" in service.get("RestrictAddressFamilies", "AF_INET"), name


def test_the_ingester_unit_uses_the_notify_protocol_it_speaks() -> None:
    service = unit("earmark-ingester.service")
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) >= 30
    assert service["RestartPreventExitStatus"] == "2"
    assert "--broker" not in service["ExecStart"]  # broker.toml from `broker config` has it


def test_install_cloud_refuses_to_guess_the_brokers_name() -> None:
    import subprocess

    done = subprocess.run(["bash", str(ROOT / "deploy" / "install-cloud.sh")], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "install-cloud.sh: --host NAME is required: the name devices use to reach the broker"]


def test_install_cloud_installs_the_units_that_exist_and_points_the_drop_in_at_its_broker_folder() -> None:
    script = (ROOT / "deploy" / "install-cloud.sh").read_text()
    for unit_name in ("earmark-ingester.service", "earmark-portal.service", "earmark-purge.service",
                      "earmark-purge.timer", "polkit/50-earmark-cloud.rules"):
        assert unit_name in script and (ROOT / "deploy" / unit_name).exists()
    drop_in = (ROOT / "deploy" / "mosquitto" / "earmark.conf").read_text()
    assert "/var/lib/earmark-cloud/broker" in drop_in  # the path the script rewrites
    assert "listener 8883 0.0.0.0" in drop_in


def test_the_portal_can_reload_the_broker_from_its_sandbox_and_write_what_an_erasure_writes() -> None:
    # An owner's revocation or erasure in the portal reloads Mosquitto. NoNewPrivileges (kept:
    # the portal faces the internet) makes sudo fail, so the reload goes through polkit, and
    # the rule allows that one verb on that one unit for that one user.
    portal = unit("earmark-portal.service")
    assert portal["NoNewPrivileges"] == "yes" and "portal" in portal["ExecStart"]
    script = (ROOT / "deploy" / "install-cloud.sh").read_text()
    [command] = [line for line in script.splitlines() if line.startswith("reload_command")]
    assert "sudo" not in command and "systemctl reload mosquitto" in command
    rule = (ROOT / "deploy" / "polkit" / "50-earmark-cloud.rules").read_text()
    for needed in ('"mosquitto.service"', '"reload"', 'subject.user == "earmark-cloud"'):
        assert needed in rule
    writable = portal["ReadWritePaths"].split()
    assert {"/var/lib/earmark-cloud", "/var/lib/earmark-broker", "/etc/earmark-cloud"} <= set(writable)
    assert "AF_UNIX" in portal["RestrictAddressFamilies"]  # systemd's D-Bus


def test_scaling_md_grants_the_ingester_exactly_the_rabbitmq_rights_its_code_and_tests_use() -> None:
    from earmark.cloud.broker.rabbit import INGESTER_PERMISSIONS, INGESTER_TOPIC_PERMISSIONS

    scaling = (ROOT / "deploy" / "SCALING.md").read_text()
    for pattern in (*INGESTER_PERMISSIONS, *INGESTER_TOPIC_PERMISSIONS):
        assert f"'{pattern}'" in scaling, pattern


def test_a_filters_days_are_the_owners_own_across_a_change_of_summer_time() -> None:
    """Issue 25: the portal's date filter in the owner's zone; a range across a change to
    summer time takes each end's own offset (Berlin: winter -60, summer -120 minutes)."""
    from earmark.cloud.portal.recordings import chosen_by

    chosen, given = chosen_by({"since": "2026-03-29", "until": "2026-03-29", "since_tz": "-60", "until_tz": "-120",
                               "device": "kitchen-pi"})
    assert (chosen.since, chosen.until, chosen.device) == ("2026-03-28T23:00:00.000Z", "2026-03-29T22:00:00.000Z",
                                                          "kitchen-pi")
    nothing, _ = chosen_by({"since": "not a day", "until_tz": "soon"})
    assert not nothing.narrows
    assert given == {"since": "2026-03-29", "until": "2026-03-29", "since_tz": "-60", "until_tz": "-120",
                     "device": "kitchen-pi"}


def test_the_lean_s3_signer_signs_as_aws_documents_it() -> None:
    """AWS's worked example of Signature Version 4 for S3 ("Example: GET Object", the
    sigv4-header-based-auth page): the same request must get the same signature."""
    from datetime import UTC, datetime

    from earmark.cloud.store.s3put import Credentials, LeanS3

    lean = LeanS3("http://s3.amazonaws.com", "examplebucket", "us-east-1", "virtual",
                  lambda: Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"))
    headers = lean.signed("GET", "/test.txt", b"", {"range": "bytes=0-9"}, datetime(2013, 5, 24, tzinfo=UTC))
    assert headers["host"] == "examplebucket.s3.amazonaws.com"
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    secure = LeanS3("https://minio.example.org:9000", "clips", "", "path", lambda: Credentials("a", "b", "t"))
    signed = secure.signed("PUT", "/clips/k", b"x" * 10, {"if-none-match": "*"})
    assert signed["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD" and signed["x-amz-security-token"] == "t"
    assert "if-none-match;" in signed["authorization"] and signed["content-length"] == "10"


def test_the_lean_s3_client_tries_a_server_error_again_as_boto3_did() -> None:
    """CI, 2026-12-06: rclone's serve s3 answered one PUT of a busy batch with InternalError
    (500); boto3 had retried it unseen, the lean client failed the batch. A 5xx is now tried
    again (3 attempts in all); anything else is answered at once."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from earmark.cloud.store.s3put import ATTEMPTS, Credentials, LeanS3

    answers: list[int] = []
    seen: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self) -> None:
            seen.append(self.rfile.read(int(self.headers["content-length"])))
            status = answers.pop(0) if answers else 200
            body = b"<Error><Code>InternalError</Code><Message>busy</Message></Error>" if status >= 500 else b""
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lean = LeanS3(f"http://127.0.0.1:{server.server_port}", "b", "", "path", lambda: Credentials("a", "s"))
        answers[:] = [500]
        assert lean.put("k", (b"head\n", b"body"), False).status == 200 and seen == [b"head\nbody"] * 2
        answers[:] = [503] * ATTEMPTS
        failed = lean.put("k", b"x", False)
        assert (failed.status, failed.code) == (503, "InternalError") and len(seen) == 2 + ATTEMPTS
        answers[:] = [403]
        assert lean.put("k", b"x", False).status == 403 and len(seen) == 3 + ATTEMPTS  # a refusal: once
    finally:
        server.shutdown()
        lean.close()
