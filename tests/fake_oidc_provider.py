"""A small real OpenID Connect provider on 127.0.0.1 for tests: discovery, JWKS (a joserfc RSA key), an
authorization endpoint that approves at once (redirecting back with a code) and a token endpoint that checks
the client's secret, the code, the redirect URI and PKCE and returns an RS256-signed ID token.

    with running_provider(client_id="surgreview", client_secret="s3cret") as provider:
        provider.behaviour.roles = ["reviewer"]   # what the next ID token says
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey


@dataclass
class Behaviour:
    """What the next ID token holds; tests change it between sign-ins."""

    subject: str = "sub-0001"
    username: str = "dr.jane"
    name: str = "Dr Jane Roe"
    roles: list[str] | None = field(default_factory=lambda: ["reviewer"])
    audience: str | None = None  # None: the client id
    issuer: str | None = None  # None: the provider's own URL
    sign_with: RSAKey | None = None  # None: the key published in the JWKS
    nonce: str | None = None  # None: the nonce the client sent
    lifetime_s: int = 300


@dataclass
class FakeProvider:
    url: str
    client_id: str
    client_secret: str
    key: RSAKey
    behaviour: Behaviour = field(default_factory=Behaviour)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def id_token(self, nonce: str) -> str:
        b = self.behaviour
        now = int(time.time())
        claims: dict[str, Any] = {"iss": b.issuer or self.url, "sub": b.subject, "aud": b.audience or self.client_id,
                                  "iat": now, "exp": now + b.lifetime_s, "nonce": b.nonce or nonce,
                                  "preferred_username": b.username, "name": b.name}
        if b.roles is not None:
            claims["roles"] = b.roles
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, b.sign_with or self.key)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class _Handler(BaseHTTPRequestHandler):
    provider: FakeProvider

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        p = self.provider
        parts = urlsplit(self.path)
        if parts.path == "/.well-known/openid-configuration":
            self._send(200, {"issuer": p.url, "authorization_endpoint": f"{p.url}/authorize",
                             "token_endpoint": f"{p.url}/token", "jwks_uri": f"{p.url}/jwks",
                             "response_types_supported": ["code"], "subject_types_supported": ["public"],
                             "id_token_signing_alg_values_supported": ["RS256"],
                             "code_challenge_methods_supported": ["S256"]})
        elif parts.path == "/jwks":
            self._send(200, {"keys": [p.key.as_dict(private=False)]})
        elif parts.path == "/authorize":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if query.get("client_id") != p.client_id or query.get("response_type") != "code":
                self._send(400, {"error": "invalid_request"})
                return
            code = secrets.token_urlsafe(16)
            p.codes[code] = query
            target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
            self._send(302, None, {"Location": target})
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:
        p = self.provider
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        p.token_requests.append(form)
        expected = "Basic " + base64.b64encode(f"{p.client_id}:{p.client_secret}".encode()).decode()
        if urlsplit(self.path).path != "/token" or self.headers.get("Authorization") != expected:
            self._send(401, {"error": "invalid_client"})
            return
        grant = p.codes.pop(form.get("code", ""), None)
        if (grant is None or form.get("redirect_uri") != grant["redirect_uri"]
                or _s256(form.get("code_verifier", "")) != grant.get("code_challenge")):
            self._send(400, {"error": "invalid_grant"})
            return
        self._send(200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300,
                         "id_token": p.id_token(grant.get("nonce", ""))})


@contextmanager
def running_provider(client_id: str = "surgreview", client_secret: str = "provider-secret") -> Iterator[FakeProvider]:
    """A provider serving on a free loopback port until the block ends."""
    handler = type("Handler", (_Handler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    provider = FakeProvider(f"http://127.0.0.1:{server.server_address[1]}", client_id, client_secret,
                            RSAKey.generate_key(2048, parameters={"kid": "key-1"}))
    handler.provider = provider
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
