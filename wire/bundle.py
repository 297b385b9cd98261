"""The pairing bundle: what `earmark-cloud device add --bundle-out` hands a device and
`earmark-device provision` installs. JSON, written 0600: it holds the device's broker
password."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from earmark.wire.envelope import OWNER_ID_PATTERN
from earmark.wire.errors import UsageError
from earmark.wire.topics import check_device_id

BUNDLE_VERSION = 1


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

    def to_json(self) -> str:
        return json.dumps({"version": BUNDLE_VERSION, **asdict(self)}, indent=2) + "\n"


def parse_bundle(text: str) -> PairingBundle:
    try:
        data = json.loads(text)
    except ValueError:
        raise BundleError("the pairing bundle is not JSON") from None
    if not isinstance(data, dict) or data.get("version") != BUNDLE_VERSION:
        raise BundleError(f"the pairing bundle is not version {BUNDLE_VERSION}")
    fields = {k: data.get(k) for k in PairingBundle.__dataclass_fields__}
    if set(data) - set(fields) - {"version"} or not all(isinstance(v, str) for v in fields.values()):
        raise BundleError("the pairing bundle has missing, unknown or non-text fields")
    bundle = PairingBundle(**fields)  # type: ignore[arg-type]
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
