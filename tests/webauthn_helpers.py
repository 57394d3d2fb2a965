"""A software authenticator for tests: what a browser and its passkey would send.

Why it exists: the passkey ceremonies can only be tested with real signatures over
real authenticator data, and every refusal (wrong origin, wrong RP ID, missing user
verification, a counter going backwards, a tampered signature) needs an authenticator
that can be told to misbehave in exactly one way. Keys are EC P-256 (ES256) made with
``cryptography``; ``cbor2`` only *encodes* (the attestation object with fmt "none" and
the COSE key); the portal's side decodes with py_webauthn alone.

It answers the options JSON the portal hands the browser (``begin_registration`` /
``begin_authentication``) with the JSON the browser posts back, base64url everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
AAGUID = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cose_key(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The public half as a COSE EC2 key: kty EC2, alg ES256, crv P-256, x, y."""
    numbers = private_key.public_key().public_numbers()
    return cbor2.dumps(
        {
            1: 2,
            3: -7,
            -1: 1,
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
    )


@dataclass
class Credential:
    """One key pair the authenticator holds. ``sign_count`` is the counter of the last
    signature (settable: set it lower to play a cloned key)."""

    id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes | None  # kept only for a resident (discoverable) key
    sign_count: int = 0

    @property
    def b64id(self) -> str:
        return b64url(self.id)


@dataclass
class SoftAuthenticator:
    """A browser (``origin``) with an authenticator in it. Each knob misbehaves in one
    way: ``rp_id`` signs for another RP ID than the options name; ``user_verified`` /
    ``user_present`` set the UV / UP flags; ``counts`` False keeps the counter as it is
    (0 for ever, like Apple's synced passkeys); ``backup_eligible`` / ``backed_up`` set
    BE / BS; ``resident`` False makes a key that keeps no user handle."""

    origin: str = "https://portal.example.com"
    rp_id: str | None = None
    user_verified: bool = True
    user_present: bool = True
    counts: bool = True
    backup_eligible: bool = False
    backed_up: bool = False
    resident: bool = True
    transports: tuple[str, ...] = ("internal", "hybrid")
    aaguid: bytes = AAGUID
    credentials: list[Credential] = field(default_factory=list)

    def _flags(self) -> int:
        flags = UP if self.user_present else 0
        flags |= UV if self.user_verified else 0
        flags |= BE if self.backup_eligible else 0
        flags |= BS if self.backed_up else 0
        return flags

    # Extra clientDataJSON members, signed like the rest: e.g. a ceremony run in a
    # cross-origin frame says {"crossOrigin": True, "topOrigin": "https://evil.example"}.
    client_extra: dict = field(default_factory=dict)

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
            | self.client_extra,
            separators=(",", ":"),
        ).encode()

    def create(
        self,
        options_json: str,
        *,
        sign_count: int = 0,
        public_key: bytes | None = None,
        reuse: Credential | None = None,
    ) -> str:
        """navigator.credentials.create(): a new key pair, attestation "none"; it is
        ``self.credentials[-1]``. ``reuse`` registers that credential again instead (what
        excludeCredentials keeps a real browser from doing); ``public_key`` replaces
        the COSE key."""
        options = json.loads(options_json)
        rp_id = self.rp_id or options["rp"]["id"]
        user_handle = unb64url(options["user"]["id"]) if self.resident else None
        credential = reuse or Credential(
            id=os.urandom(32),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp_id,
            user_handle=user_handle,
            sign_count=sign_count,
        )
        if reuse is None:
            self.credentials.append(credential)
        key = public_key if public_key is not None else cose_key(credential.private_key)
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags() | AT])
            + credential.sign_count.to_bytes(4, "big")
            + self.aaguid
            + len(credential.id).to_bytes(2, "big")
            + credential.id
            + key
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": credential.b64id,
                "rawId": credential.b64id,
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(
                        self._client_data("webauthn.create", options["challenge"])
                    ),
                    "attestationObject": b64url(attestation),
                    "transports": list(self.transports),
                },
                "clientExtensionResults": {},
                "authenticatorAttachment": "platform",
            }
        )

    def get(self, options_json: str, credential: Credential | None = None) -> str:
        """navigator.credentials.get(): sign with ``credential``, else the first of the
        allowed ones held here, else (discoverable) the first key for the RP ID."""
        options = json.loads(options_json)
        rp_id = self.rp_id or options["rpId"]
        if credential is None:
            allowed = {c["id"] for c in options.get("allowCredentials", [])}
            credential = next(
                c for c in self.credentials if (c.b64id in allowed if allowed else c.rp_id == rp_id)
            )
        if self.counts:
            credential.sign_count += 1
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags()])
            + credential.sign_count.to_bytes(4, "big")
        )
        client_data = self._client_data("webauthn.get", options["challenge"])
        signature = credential.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        handle = credential.user_handle
        return json.dumps(
            {
                "id": credential.b64id,
                "rawId": credential.b64id,
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": b64url(handle) if handle is not None else None,
                },
                "clientExtensionResults": {},
                "authenticatorAttachment": "platform",
            }
        )


# --- changing a response after it was signed ------------------------------------------


def edited(response_json: str, **response_fields: object) -> str:
    """The response with fields of its ``response`` part replaced (e.g. userHandle)."""
    data = json.loads(response_json)
    data["response"].update(response_fields)
    return json.dumps(data)


def tampered_signature(response_json: str) -> str:
    """The response with one bit of its signature flipped."""
    signature = bytearray(unb64url(json.loads(response_json)["response"]["signature"]))
    signature[-1] ^= 0x01
    return edited(response_json, signature=b64url(bytes(signature)))


def tampered_client_data(response_json: str, **changes: object) -> str:
    """The response with fields of its clientDataJSON changed after signing (e.g. the
    origin a phishing page's browser reported rewritten to the portal's)."""
    raw = json.loads(response_json)["response"]["clientDataJSON"]
    client_data = json.loads(unb64url(raw)) | changes
    return edited(response_json, clientDataJSON=b64url(json.dumps(client_data).encode()))
