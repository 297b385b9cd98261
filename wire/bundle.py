"""The pairing bundle: what `earmark-cloud device add --bundle-out` hands a device and
`earmark-device provision` installs. JSON, written 0600: it holds the device's broker
password."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from earmark.wire.envelope import OWNER_ID_PATTERN, RECIPIENT_PATTERN
from earmark.wire.errors import UsageError
from earmark.wire.topics import check_device_id

BUNDLE_VERSION = 2  # 2 adds the household's recipients; 1 (none) is still read


class BundleError(UsageError, ValueError):
    pass


@dataclass(frozen=True)
class PairingBundle:
    device_id: str
    owner_id: str
    public_key: str  # the device key this bundle was made for
    broker_url: str
    username: str
    password: str
    ca_pem: str
    recipients: tuple[str, ...] = ()  # the household's age recipients: the device seals every clip to them

    def to_json(self) -> str:
        return json.dumps({"version": BUNDLE_VERSION, **asdict(self), "recipients": list(self.recipients)},
                          indent=2) + "\n"


def parse_bundle(text: str) -> PairingBundle:
    try:
        data = json.loads(text)
    except ValueError:
        raise BundleError("the pairing bundle is not JSON") from None
    if not isinstance(data, dict) or data.get("version") not in (1, BUNDLE_VERSION):
        raise BundleError(f"the pairing bundle is not version {BUNDLE_VERSION}")
    recipients = data.pop("recipients", []) if data["version"] == BUNDLE_VERSION else []
    fields = {k: data.get(k) for k in PairingBundle.__dataclass_fields__ if k != "recipients"}
    if set(data) - set(fields) - {"version"} or not all(isinstance(v, str) for v in fields.values()):
        raise BundleError("the pairing bundle has missing, unknown or non-text fields")
    if not isinstance(recipients, list) or not all(isinstance(r, str) and RECIPIENT_PATTERN.fullmatch(r)
                                                   for r in recipients):
        raise BundleError("the pairing bundle's recipients are not age X25519 recipients (age1…)")
    bundle = PairingBundle(**fields, recipients=tuple(recipients))  # type: ignore[arg-type]
    try:
        check_device_id(bundle.device_id)
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    if not OWNER_ID_PATTERN.fullmatch(bundle.owner_id):
        raise BundleError("the pairing bundle's owner id is not a UUID")
    if not bundle.broker_url.startswith(("mqtt://", "mqtts://")):
        raise BundleError("the pairing bundle's broker url is not mqtt:// or mqtts://")
    if bundle.broker_url.startswith("mqtts://") and "BEGIN CERTIFICATE" not in bundle.ca_pem:
        raise BundleError("the pairing bundle has no CA certificate for its mqtts:// broker")
    return bundle
