"""Webhook signatures: ``X-Sdq-Signature: sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>``.

``X-Sdq-Timestamp`` carries ``<ts>`` (Unix seconds). Receivers recompute the HMAC over the
timestamp, a dot and the raw body, compare in constant time and reject old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Sdq-Signature"
TIMESTAMP_HEADER = "X-Sdq-Timestamp"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(secret: bytes, timestamp: int, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
