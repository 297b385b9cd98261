"""A software passkey for tests that speak the portal's JSON API directly: answers a
registration prompt with a "none" attestation and a sign-in prompt with an ES256 assertion,
as an authenticator that verified its user would (the browser tests use Chromium's virtual
authenticator instead)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP_UV_AT = 0x45  # user present, user verified, attested credential data follows
UP_UV = 0x05


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftPasskey:
    def __init__(self, credential_id: bytes | None = None) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = credential_id or os.urandom(16)
        self.count = 0

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def register(self, options: dict[str, Any], origin: str) -> dict[str, Any]:
        client_data = json.dumps({"type": "webauthn.create", "challenge": options["challenge"], "origin": origin,
                                  "crossOrigin": False}).encode()
        cid = self.credential_id
        auth_data = (hashlib.sha256(options["rp"]["id"].encode()).digest() + bytes([UP_UV_AT]) + struct.pack(">I", 0)
                     + bytes(16) + struct.pack(">H", len(cid)) + cid + self._cose_key())
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {"id": b64url(cid), "rawId": b64url(cid), "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(client_data), "attestationObject": b64url(attestation)}}

    def sign_in(self, options: dict[str, Any], origin: str) -> dict[str, Any]:
        self.count += 1
        client_data = json.dumps({"type": "webauthn.get", "challenge": options["challenge"], "origin": origin,
                                  "crossOrigin": False}).encode()
        auth_data = hashlib.sha256(options["rpId"].encode()).digest() + bytes([UP_UV]) + struct.pack(">I", self.count)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        cid = self.credential_id
        return {"id": b64url(cid), "rawId": b64url(cid), "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                             "signature": b64url(signature), "userHandle": None}}
