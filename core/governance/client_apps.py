"""Client applications: programs (not people) that call a clean room's scoring routes with tokens.

Why each rule:

* **Registered by a proposal every member votes on** (``register_client_app``): an application
  gets a standing right to call a contract's clean room, so every party consents to it, exactly
  as to the contract. The proposal names the owning member, the contracts and routes it may
  call, its rate limit and its public key.
* **Revoked by any member alone**, with a signed request in the ledger: taking a right away is
  the safe direction (as the kill switch is). A name is never reused, even after revocation,
  because the ingress refuses tokens by application name (``GET /oauth2/revocations``).
* **OAuth2 client credentials with private_key_jwt** (RFC 6749 4.4, RFC 7523): the application
  proves itself with a short-lived JWT signed by its private key, so governance holds no static
  secret of it and a stock OAuth2 client works. Every issuance is a service-signed ledger entry
  naming the application, contract and token id; the token itself is never written down.

This module is part of ``GovernanceState`` (it runs inside the state's write transactions and
uses its connection and ledger), kept apart so the registry's rules read in one place.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.config.canonical import canonical_json
from core.errors import ConflictError, InvalidInputError, NotFoundError
from core.governance import ledger
from core.governance.models import ContractState, check_contract_id
from core.governance.signing import VerifiedRequest, sign_es384

if TYPE_CHECKING:
    from core.governance.state import GovernanceState

APP_TOKEN_TTL_SECONDS = 300
MAX_ASSERTION_LIFETIME_SECONDS = 300  # RFC 7523 asks for a short exp; five minutes, as the brief states
CLOCK_SKEW_SECONDS = 30
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT_TYPE = "client_credentials"
TOKEN_PATH = "/oauth2/token"
SCOPE_PREFIX = "contract:"
SUBJECT_PREFIX = "app:"
MAX_RATE_LIMIT_PER_MINUTE = 1_000_000
MAX_LIST_ITEMS = 64
MAX_FORM_FIELDS = 16
MAX_JTI_CHARS = 256

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# one method and one exact path (letters, digits, '-', '_', '.', '~', path parameters in braces):
# no wildcard, so a vote names exactly what the application may call
_ROUTE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/(?:[A-Za-z0-9._~-]+|\{[A-Za-z_][A-Za-z0-9_]*\})?)+$")
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384"}
_RSA_ALGORITHMS = ("RS256", "PS256")
_MIN_RSA_BITS = 2048

_SCHEMA = """
CREATE TABLE IF NOT EXISTS client_apps (name TEXT PRIMARY KEY, data TEXT NOT NULL, proposal_id TEXT NOT NULL,
    seqno INTEGER NOT NULL, revoked_at REAL, revoked_by TEXT, revoked_seqno INTEGER);
CREATE TABLE IF NOT EXISTS oauth2_assertions (app TEXT NOT NULL, jti TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (app, jti));
"""


class OAuth2Error(Exception):
    """A token-endpoint refusal in RFC 6749 section 5.2's terms: ``error`` code, HTTP status and a
    one-line ``error_description`` naming the thing and the fix."""

    def __init__(self, status: int, code: str, description: str) -> None:
        self.status = status
        self.code = code
        self.description = " ".join(description.split())
        super().__init__(f"{code}: {self.description}")

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


def _invalid_client(description: str) -> OAuth2Error:
    return OAuth2Error(401, "invalid_client", description)


def _invalid_scope(description: str) -> OAuth2Error:
    return OAuth2Error(400, "invalid_scope", description)


@dataclass(frozen=True)
class AppKey:
    """An application's public key and the JWS algorithms its assertions may use."""

    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    algorithms: tuple[str, ...]
    description: str

    @property
    def pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def parse_public_key(value: object) -> AppKey:
    """An application key from a PEM public key or a public JWK (object or JSON text).

    Only EC P-256/P-384 and RSA of 2048 bits or more: the algorithms RFC 7518 names for
    asymmetric assertions at a strength a vote can rely on. A private key is refused rather than
    silently reduced to its public half: it should never have left the application."""
    hint = "pass the application's public key as a PEM file or a public JWK (EC P-256/P-384 or RSA >= 2048)"
    key: Any
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"public_key JWK is not valid JSON ({exc.msg})", hint=hint) from exc
    if isinstance(value, dict):
        kty = value.get("kty")
        if "d" in value:
            raise InvalidInputError("public_key JWK holds a private key ('d')", hint=hint)
        if kty not in ("EC", "RSA"):
            raise InvalidInputError(f"public_key JWK kty {kty!r} is neither EC nor RSA", hint=hint)
        try:
            if kty == "EC":
                key = jwt.algorithms.ECAlgorithm.from_jwk(value)
            else:
                key = jwt.algorithms.RSAAlgorithm.from_jwk(value)
        except (KeyError, ValueError, TypeError, jwt.PyJWTError) as exc:
            raise InvalidInputError(f"public_key JWK of kty {kty} does not parse", hint=hint) from exc
    elif isinstance(value, str) and "-----BEGIN" in value:
        if "PRIVATE KEY" in value:
            raise InvalidInputError("public_key PEM is a private key", hint=hint)
        try:
            key = serialization.load_pem_public_key(value.encode())
        except (ValueError, TypeError) as exc:
            raise InvalidInputError("public_key PEM does not parse", hint=hint) from exc
    else:
        raise InvalidInputError("public_key is neither a PEM public key nor a JWK", hint=hint)
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _EC_ALGORITHMS:
        return AppKey(key, (_EC_ALGORITHMS[key.curve.name],), f"EC {key.curve.name}")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS:
        return AppKey(key, _RSA_ALGORITHMS, f"RSA {key.key_size}")
    if isinstance(key, rsa.RSAPublicKey):
        kind = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        kind = f"EC {key.curve.name}"
    else:
        kind = type(key).__name__.removeprefix("_")
    raise InvalidInputError(f"public_key is {kind}, which is not accepted", hint=hint)


class RegistrationState(Protocol):
    """What checking a registration reads (the constitution's state object provides it)."""

    def member(self, member_id: str) -> dict[str, Any] | None: ...
    def contract(self, contract_id: str) -> dict[str, Any] | None: ...
    def client_app(self, name: str) -> dict[str, Any] | None: ...


def _string_list(args: dict[str, Any], field: str, hint: str) -> list[str]:
    items = args.get(field)
    if not isinstance(items, list) or not items or not all(isinstance(item, str) for item in items):
        raise InvalidInputError(f"register_client_app needs {field} as a non-empty list of strings", hint=hint)
    if len(items) > MAX_LIST_ITEMS:
        raise InvalidInputError(
            f"register_client_app lists {len(items)} {field}, more than {MAX_LIST_ITEMS}", hint=hint
        )
    return list(dict.fromkeys(items))


def check_registration(args: dict[str, Any], state: RegistrationState) -> dict[str, Any]:
    """The application record a ``register_client_app`` proposal would create, or a one-line refusal."""
    name = args.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(
            f"client application name {name!r} is not valid",
            hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    if state.client_app(name) is not None:
        raise ConflictError(
            f"client application '{name}' is already registered (names are never reused, even after revocation)",
            hint="choose another --name",
        )
    owner = args.get("owner")
    if not isinstance(owner, str) or state.member(owner) is None:
        raise NotFoundError(
            f"owner {str(owner)[:16]!r} of client application '{name}' is not a member",
            hint="pass a member id from `cleanroom governance member list` as --owner",
        )
    contracts = _string_list(args, "contracts", "pass --contract ID (repeatable)")
    for contract_id in contracts:
        if state.contract(check_contract_id(contract_id)) is None:
            raise NotFoundError(
                f"contract '{contract_id}' named by client application '{name}' does not exist",
                hint="list contracts with `cleanroom governance contract list`",
            )
    routes = _string_list(args, "routes", "pass --route 'POST /score' (repeatable)")
    for route in routes:
        if not _ROUTE.match(route) or "/../" in f"{route}/" or "/./" in f"{route}/":
            raise InvalidInputError(
                f"route {route!r} of client application '{name}' is not 'METHOD /exact/path'",
                hint="use e.g. 'POST /score' or 'POST /v2/models/{name}/infer' (GET, POST, PUT, PATCH or DELETE)",
            )
    limit = args.get("rate_limit_per_minute")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RATE_LIMIT_PER_MINUTE:
        raise InvalidInputError(
            f"rate_limit_per_minute {limit!r} of client application '{name}' is not in 1..{MAX_RATE_LIMIT_PER_MINUTE}",
            hint="pass --rate-limit N (requests per minute)",
        )
    key = parse_public_key(args.get("public_key"))
    return {
        "name": name,
        "owner": owner,
        "contracts": contracts,
        "routes": routes,
        "rateLimitPerMinute": limit,
        "publicKey": key.pem,
        "keyType": key.description,
        "algorithms": list(key.algorithms),
    }


def _form(body: bytes, content_type: str) -> dict[str, str]:
    """The token request's form fields; a field given twice is refused (RFC 6749 section 3.2)."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuth2Error(
            400, "invalid_request", "the token request must be application/x-www-form-urlencoded: send a form body"
        )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuth2Error(400, "invalid_request", f"the token request form does not parse ({exc})") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise OAuth2Error(400, "invalid_request", f"parameter {key} is given twice: send it once")
        form[key] = value
    return form


def requested_contract(form: dict[str, str], contracts: list[str]) -> str:
    """The contract a token is asked for: ``scope`` or ``resource`` ``contract:<id>``, else the
    application's only contract."""
    named = set()
    for field in ("scope", "resource"):
        for item in form.get(field, "").split():
            if not item.startswith(SCOPE_PREFIX):
                raise _invalid_scope(f"{field} {item!r} is not known: ask for {SCOPE_PREFIX}<contract id>")
            named.add(item[len(SCOPE_PREFIX) :])
    if len(named) > 1:
        raise _invalid_scope("a token is for one contract: ask for a single contract:<id>")
    if not named:
        if len(contracts) != 1:
            raise _invalid_scope("the application may call several contracts: ask for scope=contract:<id>")
        return contracts[0]
    contract_id = named.pop()
    if contract_id not in contracts:
        raise _invalid_scope(
            f"the application is not registered for contract '{contract_id}': ask for one of {', '.join(contracts)}"
        )
    return contract_id


class ClientApps:
    """The registry, revocations and token endpoint, inside ``GovernanceState``'s transactions."""

    def __init__(self, state: GovernanceState) -> None:
        self._state = state
        self._last_prune = 0.0
        # the URLs an assertion's ``aud`` may name; the service sets them from its port at start
        self.token_endpoints: frozenset[str] = frozenset()
        state._db.executescript(_SCHEMA)

    # -- registry -----------------------------------------------------------------------------------
    def _row(self, name: str) -> sqlite3.Row | None:
        with self._state._lock:
            row: sqlite3.Row | None = self._state._db.execute(
                "SELECT * FROM client_apps WHERE name=?", (name,)
            ).fetchone()
        return row

    @staticmethod
    def _view(row: sqlite3.Row) -> dict[str, Any]:
        """What anyone may read: metadata, never the key itself (its type only)."""
        data = json.loads(row["data"])
        return {
            "name": row["name"],
            "owner": data["owner"],
            "contracts": data["contracts"],
            "routes": data["routes"],
            "rateLimitPerMinute": data["rateLimitPerMinute"],
            "keyType": data["keyType"],
            "status": "revoked" if row["revoked_at"] is not None else "active",
            "proposalId": row["proposal_id"],
            "seqno": row["seqno"],
            "revokedAt": row["revoked_at"],
            "revokedBy": row["revoked_by"],
        }

    def get(self, name: str) -> dict[str, Any] | None:
        row = self._row(name)
        return None if row is None else self._view(row)

    def list(self) -> list[dict[str, Any]]:
        with self._state._lock:
            rows = self._state._db.execute("SELECT * FROM client_apps ORDER BY seqno, name").fetchall()
        return [self._view(row) for row in rows]

    def register(self, app: dict[str, Any], proposal_id: str) -> None:
        """Apply an accepted ``register_client_app`` (inside the ballot's transaction), already
        checked again by the constitution: a name taken while the proposal was open fails it."""
        self._state._db.execute(
            "INSERT INTO client_apps (name, data, proposal_id, seqno) VALUES (?,?,?,?)",
            (app["name"], canonical_json(app).decode(), proposal_id, self._state._head[0]),
        )

    def revoke(self, request: VerifiedRequest, name: str) -> dict[str, Any]:
        """Any active member revokes alone; a second revocation changes nothing and says so."""
        with self._state._write(request):
            row = self._row(name)
            if row is None:
                raise NotFoundError(
                    f"client application '{name}' is not registered",
                    hint="list applications with `cleanroom governance app list`",
                )
            if row["revoked_at"] is not None:
                return self._view(row) | {"idempotent": True}
            seqno = self._state._member_write(request, "client_app.revoke")
            self._state._db.execute(
                "UPDATE client_apps SET revoked_at=?, revoked_by=?, revoked_seqno=? WHERE name=?",
                (time.time(), request.signer, seqno, name),
            )
        view = self.get(name)
        assert view is not None, "a revoked application stays registered"
        return view

    def revocations(self) -> dict[str, Any]:
        """``{version, revoked: [{app, revokedAt}]}``; ``version`` grows with every revocation."""
        with self._state._lock:
            rows = self._state._db.execute(
                "SELECT name, revoked_at, revoked_seqno FROM client_apps WHERE revoked_at IS NOT NULL "
                "ORDER BY revoked_seqno"
            ).fetchall()
        return {
            "version": max((row["revoked_seqno"] for row in rows), default=0),
            "revoked": [{"app": row["name"], "revokedAt": int(row["revoked_at"])} for row in rows],
        }

    # -- the token endpoint -------------------------------------------------------------------------
    def _assertion_claims(self, form: dict[str, str]) -> tuple[dict[str, Any], sqlite3.Row]:
        """The verified claims of the client assertion and the application it names (RFC 7523 3)."""
        assertion_type, assertion = form.get("client_assertion_type"), form.get("client_assertion")
        if not assertion_type or not assertion:
            raise _invalid_client(
                f"client authentication is missing: send client_assertion_type={ASSERTION_TYPE} and a "
                "client_assertion JWT signed with the application's key (private_key_jwt)"
            )
        if assertion_type != ASSERTION_TYPE:
            raise _invalid_client(f"client_assertion_type {assertion_type!r} is not supported: use {ASSERTION_TYPE}")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _invalid_client(f"client_assertion is not a JWT ({exc})") from exc
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm.lower() == "none" or algorithm.upper().startswith("HS"):
            raise _invalid_client(
                f"client assertion alg {algorithm!r} is refused: sign it with the application's private key "
                "(ES256, ES384, RS256 or PS256)"
            )
        name = unverified.get("iss")
        if not isinstance(name, str) or not name:
            raise _invalid_client("client assertion has no iss: set iss and sub to the application name")
        client_id = form.get("client_id")
        if client_id is not None and client_id != name:
            raise _invalid_client(f"client_id {client_id!r} is not the assertion's iss {name!r}: send the same name")
        row = self._row(name)
        if row is None:
            raise _invalid_client(f"client application {name!r} is not registered: register it by proposal first")
        if row["revoked_at"] is not None:
            raise _invalid_client(f"client application '{name}' is revoked: register a new application")
        data = json.loads(row["data"])
        if algorithm not in data["algorithms"]:
            raise _invalid_client(
                f"client assertion alg {algorithm} does not fit the registered {data['keyType']} key: "
                f"use {' or '.join(data['algorithms'])}"
            )
        key = serialization.load_pem_public_key(data["publicKey"].encode())
        audiences = sorted(self.token_endpoints | {self._state.token_issuer})
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key,  # type: ignore[arg-type]
                algorithms=[algorithm],
                audience=audiences,
                issuer=name,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise _invalid_client("client assertion has expired: sign a fresh one") from exc
        except jwt.InvalidAudienceError as exc:
            raise _invalid_client(
                f"client assertion aud is not this token endpoint: set aud to {audiences[0]}"
            ) from exc
        except jwt.InvalidSignatureError as exc:
            raise _invalid_client(
                f"client assertion signature does not verify with the key registered for '{name}'"
            ) from exc
        except jwt.PyJWTError as exc:
            raise _invalid_client(f"client assertion is not valid ({exc})") from exc
        if claims["sub"] != name:
            raise _invalid_client(f"client assertion sub {claims['sub']!r} is not its iss: set both to '{name}'")
        if not isinstance(claims["exp"], int | float) or claims[
            "exp"
        ] > time.time() + MAX_ASSERTION_LIFETIME_SECONDS + (CLOCK_SKEW_SECONDS):
            raise _invalid_client(
                f"client assertion expires more than {MAX_ASSERTION_LIFETIME_SECONDS} s ahead: sign a short-lived one"
            )
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
            raise _invalid_client(f"client assertion jti must be a string of 1-{MAX_JTI_CHARS} characters")
        return claims, row

    def issue(self, body: bytes, content_type: str) -> dict[str, Any]:
        """``POST /oauth2/token``: an access token for a registered, unrevoked application."""
        form = _form(body, content_type)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuth2Error(400, "invalid_request", f"grant_type is missing: send grant_type={GRANT_TYPE}")
        if grant_type != GRANT_TYPE:
            raise OAuth2Error(
                400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported: use {GRANT_TYPE}"
            )
        assertion, row = self._assertion_claims(form)
        name = row["name"]
        contract_id = requested_contract(form, json.loads(row["data"])["contracts"])
        state = self._state
        with state._write():
            current = self._row(name)  # under the write lock: a revocation committed meanwhile wins
            if current is None or current["revoked_at"] is not None:
                raise _invalid_client(f"client application '{name}' is revoked: register a new application")
            contract = state.contract(contract_id)
            if contract is None or contract["state"] != ContractState.ACCEPTED:
                raise _invalid_scope(
                    f"contract '{contract_id}' is {contract['state'] if contract else 'missing'}; "
                    "tokens are for accepted contracts: get it accepted first"
                )
            now = time.time()
            self._prune(now)
            try:
                state._db.execute(
                    "INSERT INTO oauth2_assertions VALUES (?,?,?)", (name, assertion["jti"], float(assertion["exp"]))
                )
            except sqlite3.IntegrityError:
                raise _invalid_client("client assertion was already used (replayed jti): sign a new one") from None
            issued_at = int(now)
            data = json.loads(current["data"])
            claims = {
                "iss": state.token_issuer,
                "sub": f"{SUBJECT_PREFIX}{name}",
                "aud": f"cleanroom:{contract_id}",
                "contract_id": contract_id,
                "app": name,
                "owner": data["owner"],
                "routes": data["routes"],
                "rate_limit_per_minute": data["rateLimitPerMinute"],
                "iat": issued_at,
                "nbf": issued_at - 5,
                "exp": issued_at + APP_TOKEN_TTL_SECONDS,
                "jti": uuid.uuid4().hex,
            }
            record = {"app": name, "contract_id": contract_id, "jti": claims["jti"], "exp": claims["exp"]}
            signed = sign_es384(state.identity.private_key, kid=state.identity.service_id, path=TOKEN_PATH, body=record)
            state._append("oauth2.token", ledger.SERVICE_SIGNER, signed)
            key = state.token_keys.current
        return {
            "access_token": key.sign(claims),
            "token_type": "Bearer",
            "expires_in": APP_TOKEN_TTL_SECONDS,
            "scope": f"{SCOPE_PREFIX}{contract_id}",
        }

    def _prune(self, now: float) -> None:
        """Forget used assertion ids once they could no longer pass the exp check (once a minute)."""
        if now - self._last_prune >= 60:
            self._last_prune = now
            self._state._db.execute("DELETE FROM oauth2_assertions WHERE expires < ?", (now - CLOCK_SKEW_SECONDS,))


def token_endpoints(port: int) -> frozenset[str]:
    """The token endpoint URLs of a loopback service on ``port`` (what an assertion's aud names)."""
    return frozenset(f"https://{host}:{port}{TOKEN_PATH}" for host in ("127.0.0.1", "localhost"))


def client_assertion(name: str, private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, audience: str) -> str:
    """A private_key_jwt client assertion for ``name``, valid for one minute (what `app token` sends)."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        algorithm = "PS256"
    elif private_key.curve.name in _EC_ALGORITHMS:
        algorithm = _EC_ALGORITHMS[private_key.curve.name]
    else:
        raise InvalidInputError(f"application key curve {private_key.curve.name} is not accepted", hint="use P-384")
    now = int(time.time())
    claims = {"iss": name, "sub": name, "aud": audience, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, private_key, algorithm=algorithm)


def new_app_key() -> tuple[bytes, str]:
    """A fresh P-384 key pair for an application: (private PKCS#8 PEM, public PEM)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private, AppKey(key.public_key(), ("ES384",), "EC secp384r1").pem
