"""Governance state in SQLite: every write and its ledger entry commit in one transaction.

Durability: WAL with ``synchronous=FULL``, so a write the service acknowledged survives SIGKILL
and power loss; the replay cache lives in the same database, so a restart does not reopen the
replay window. Writes are serialised under one lock (SQLite allows one writer anyway) and
group-committed (see ``_write``), so concurrent ballots share an fsync instead of queueing for
one each. Reads use the same connection, so a read may see a write one fsync before it is
acknowledged to its sender (as CCF reads may see uncommitted state).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.config.canonical import canonical_json, document_hash
from core.crypto.identity import load_certificate, member_id_of
from core.errors import (
    AccessDeniedError,
    CleanroomError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
)
from core.governance import ca, client_apps, constitution, ledger, model_registry, privacy, token_keys, traffic
from core.governance.models import (
    DOCUMENT_ACTIONS,
    EVENT_CATEGORIES,
    RUNTIME_OPTIONS,
    SERVICE_ATTESTATION_TYPES,
    VOTED_OPTIONS,
    VOTES,
    Action,
    ContractState,
    MemberStatus,
    OptionStatus,
    ProposalState,
    StaleVersionError,
    Vote,
    check_contract_id,
)
from core.governance.service_identity import ServiceIdentity
from core.governance.signing import (
    SECRET_NONCE,
    SECRET_NONCE_BYTES,
    SECRET_VALUE,
    SignatureRejected,
    VerifiedRequest,
    secret_commitment,
    sign_es384,
)
from core.keys.measurement import policy_hash_of

DB_FILE = "governance.db"
DEK_SECRET_PREFIX = "dek-"  # ``core.keys.wrap_deks.dek_secret_name``: the DEK of a named asset
TOKEN_TTL_SECONDS = 3600
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (seqno INTEGER PRIMARY KEY, prev TEXT NOT NULL, digest TEXT NOT NULL,
    signer TEXT NOT NULL, kind TEXT NOT NULL, hash TEXT NOT NULL, request BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (to_seqno INTEGER PRIMARY KEY, from_seqno INTEGER NOT NULL,
    chain_head TEXT NOT NULL, merkle_root TEXT NOT NULL, signed BLOB NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seen (digest TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS members (member_id TEXT PRIMARY KEY, name TEXT NOT NULL, cert_pem TEXT NOT NULL,
    status TEXT NOT NULL, data TEXT NOT NULL, seqno INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS contracts (id TEXT PRIMARY KEY, data TEXT NOT NULL, version TEXT NOT NULL,
    state TEXT NOT NULL, proposal_id TEXT, hash TEXT, created_by TEXT NOT NULL, seqno INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS proposals (id TEXT PRIMARY KEY, action TEXT NOT NULL, args TEXT NOT NULL,
    proposer TEXT NOT NULL, state TEXT NOT NULL, contract_id TEXT, failure TEXT, seqno INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS proposals_by_contract ON proposals (contract_id, action, state);
CREATE TABLE IF NOT EXISTS ballots (proposal_id TEXT NOT NULL, member_id TEXT NOT NULL, vote TEXT NOT NULL,
    seqno INTEGER NOT NULL, PRIMARY KEY (proposal_id, member_id));
CREATE TABLE IF NOT EXISTS documents (contract_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
    proposal_id TEXT NOT NULL, PRIMARY KEY (contract_id, kind));
CREATE TABLE IF NOT EXISTS options (contract_id TEXT NOT NULL, option TEXT NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (contract_id, option));
CREATE TABLE IF NOT EXISTS execution_disabled (contract_id TEXT NOT NULL, member_id TEXT NOT NULL,
    PRIMARY KEY (contract_id, member_id));
CREATE TABLE IF NOT EXISTS cas (contract_id TEXT PRIMARY KEY, proposal_id TEXT NOT NULL, key_pem BLOB,
    cert_pem TEXT);
CREATE TABLE IF NOT EXISTS secrets (contract_id TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL,
    owner TEXT NOT NULL, seqno INTEGER NOT NULL, PRIMARY KEY (contract_id, name));
CREATE TABLE IF NOT EXISTS privacy_entries (seqno INTEGER PRIMARY KEY, kind TEXT NOT NULL, signer TEXT NOT NULL,
    record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (contract_id TEXT NOT NULL, seqno INTEGER NOT NULL, ledger_seqno INTEGER NOT NULL,
    timestamp REAL NOT NULL, type TEXT NOT NULL, category TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (contract_id, seqno));
"""


def _common_name(cert: Any) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _member_document(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "memberId": row["member_id"],
        "name": row["name"],
        "status": row["status"],
        "certificate": row["cert_pem"],
        "memberData": json.loads(row["data"]),
    }


def _contract_document(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "data": json.loads(row["data"]),
        "version": row["version"],
        "state": row["state"],
        "proposalId": row["proposal_id"] or "",
        "hash": row["hash"] or "",
        "createdBy": row["created_by"],
    }


def _refuse_attestation(token: str) -> dict[str, Any]:
    raise AccessDeniedError(
        "this governance service has no attestation verifier configured",
        hint="start it with an attestation verifier (step 3 runtime) before clean rooms call it",
    )


AttestationVerifier = Callable[[str], dict[str, Any]]


class GovernanceState:
    """All governance operations. Member writes take a ``VerifiedRequest`` (signature checked)."""

    _head: tuple[int, str]  # (seqno, hash) of the last ledger entry
    _covered: int  # the last seqno a signed checkpoint covers

    def __init__(
        self,
        state_dir: Path,
        identity: ServiceIdentity,
        *,
        window_seconds: int = 300,
        checkpoint_every: int = 100,
        attestation_verifier: AttestationVerifier | None = None,
    ) -> None:
        self.identity = identity
        self.window_seconds = window_seconds
        self.checkpoint_every = checkpoint_every
        self.attestation_verifier = attestation_verifier or _refuse_attestation
        db_path = state_dir / DB_FILE
        if not db_path.exists():  # created 0600: the database holds the contract CA keys and secrets
            os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db.executescript(traffic.SCHEMA)
        self._lock = threading.RLock()  # the connection and the in-memory ledger head
        self._commit_lock = threading.Lock()  # one committer at a time (group commit)
        self._in_transaction = False
        self._batch = self._committed_batch = 0
        self._failed_batches: set[int] = set()
        self._last_prune = 0.0
        self._member_keys: dict[str, tuple[str, ec.EllipticCurvePublicKey]] = {}
        self._load_head()
        self.on_event: Callable[[str], None] = lambda contract_id: None
        self.models = model_registry.ModelRecords(self)  # the model registry's writes and reads
        self.client_apps = client_apps.ClientApps(self)  # client applications and /oauth2/token
        # a retired key stays published while any token it signed may still be valid
        overlap = max(TOKEN_TTL_SECONDS, client_apps.APP_TOKEN_TTL_SECONDS)
        self.token_keys = token_keys.TokenKeyRing(self._db, self._lock, identity.token_key, overlap_seconds=overlap)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions and the ledger ----------------------------------------------------------------
    @contextmanager
    def _write(self, request: VerifiedRequest | None = None) -> Iterator[None]:
        """Run the block as one atomic step of the current batch; return once the batch is durable.

        Group commit: steps run one at a time under the lock, each in a savepoint of a shared
        transaction; the first finished step to reach ``_commit`` commits every step done so far
        with one fsync, while later arrivals already run in the next batch. A failing step rolls
        back to its savepoint only. A member's request is checked against the replay cache first.
        """
        with self._lock:
            if not self._in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
                self._in_transaction = True
                self._batch += 1
            batch, head, covered = self._batch, self._head, self._covered
            self._db.execute("SAVEPOINT step")
            try:
                if request is not None:
                    self._remember(request)
                yield
            except BaseException:
                self._db.execute("ROLLBACK TO step")
                self._db.execute("RELEASE step")
                self._head, self._covered = head, covered
                self._member_keys.clear()
                raise
            self._db.execute("RELEASE step")
        self._commit(batch)
        if self._head[0] - self._covered >= self.checkpoint_every:
            self.checkpoint()

    def _commit(self, batch: int) -> None:
        with self._commit_lock:
            if batch in self._failed_batches:
                raise ServiceUnavailableError(
                    "the governance database could not commit this write", hint="check the disk, then retry"
                )
            if self._committed_batch >= batch:
                return
            with self._lock:
                try:
                    self._db.execute("COMMIT")
                    self._committed_batch = self._batch
                except sqlite3.Error as exc:
                    self._db.execute("ROLLBACK")
                    self._failed_batches.add(self._batch)
                    self._load_head()
                    raise ServiceUnavailableError(
                        f"the governance database could not commit ({exc})", hint="check the disk, then retry"
                    ) from exc
                finally:
                    self._in_transaction = False

    def _load_head(self) -> None:
        last = self._db.execute("SELECT seqno, hash FROM ledger ORDER BY seqno DESC LIMIT 1").fetchone()
        self._head = (last["seqno"], last["hash"]) if last else (0, ledger.GENESIS_PREV)
        self._covered = self._db.execute("SELECT MAX(to_seqno) FROM checkpoints").fetchone()[0] or 0
        self._member_keys.clear()

    def _append(self, kind: str, signer: str, request: bytes) -> int:
        seqno, prev = self._head[0] + 1, self._head[1]
        digest = ledger.payload_digest(request)
        entry = ledger.entry_hash(seqno, prev, digest, signer, kind)
        self._db.execute(
            "INSERT INTO ledger VALUES (?,?,?,?,?,?,?)", (seqno, prev, digest, signer, kind, entry, request)
        )
        self._head = (seqno, entry)
        return seqno

    def _remember(self, request: VerifiedRequest) -> None:
        """Refuse a replay; remember this request until it is too old to be fresh.

        The key is the digest of what was signed (``VerifiedRequest.digest``), so a re-encoded
        or re-signed copy of a request already received is a replay as much as its exact bytes."""
        now = time.time()
        try:
            self._db.execute("INSERT INTO seen VALUES (?, ?)", (request.digest, now + 2 * self.window_seconds))
        except sqlite3.IntegrityError:
            raise SignatureRejected(
                401,
                "replayed request: this signed request was already received (in this "
                "or another encoding); sign a new one",
            ) from None

    def _member_write(self, request: VerifiedRequest, kind: str) -> int:
        """Ledger the request as signed, without its unprotected header (a secret's value)."""
        return self._append(kind, request.signer, request.ledger_record or request.raw)

    def prune_seen(self) -> None:
        """Forget replay digests too old to pass the freshness check (at most once a minute)."""
        now = time.time()
        if now - self._last_prune < 60:
            return
        self._last_prune = now
        with self._write():
            self._db.execute("DELETE FROM seen WHERE expires < ?", (time.time(),))

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign a checkpoint over the entries no checkpoint covers yet (if any)."""
        if self._head[0] <= self._covered:  # nothing pending: no transaction, no fsync
            return None
        with self._write():
            first, last = self._covered + 1, self._head[0]
            if last < first:
                return None
            hashes = [
                row[0]
                for row in self._db.execute(
                    "SELECT hash FROM ledger WHERE seqno BETWEEN ? AND ? ORDER BY seqno", (first, last)
                )
            ]
            body = ledger.checkpoint_body(first, last, self._head[1], ledger.merkle_root(hashes))
            signed = ledger.sign_checkpoint(self.identity.private_key, self.identity.service_id, body)
            self._db.execute(
                "INSERT INTO checkpoints VALUES (?,?,?,?,?,?)",
                (last, first, body["chain_head"], body["merkle_root"], signed, time.time()),
            )
            self._covered = last
            return body

    def genesis(self, initial_member_certs: list[str]) -> None:
        """Entry 1: the founding consortium, signed by the service identity."""
        if self._head[0] != 0:
            raise ConflictError("this governance service already has a consortium", hint="nothing to do")
        if not initial_member_certs:
            raise InvalidInputError(
                "a consortium needs at least one initial member", hint="pass --initial-member-cert PEM (one per party)"
            )
        members = []
        for pem in initial_member_certs:
            cert = load_certificate(pem)
            name = _common_name(cert)
            members.append(
                {"member_id": member_id_of(cert), "name": name, "cert": pem if isinstance(pem, str) else pem.decode()}
            )
        if len({m["member_id"] for m in members}) != len(members):
            raise InvalidInputError("the same member certificate was given twice", hint="pass each party's cert once")
        body = {"members": members}
        request = sign_es384(self.identity.private_key, kid=self.identity.service_id, path="/genesis", body=body)
        with self._write():
            seqno = self._append("genesis", ledger.SERVICE_SIGNER, request)
            for m in members:
                self._db.execute(
                    "INSERT INTO members VALUES (?,?,?,?,?,?)",
                    (m["member_id"], m["name"], m["cert"], MemberStatus.ACTIVE, "{}", seqno),
                )
        self.checkpoint()

    # -- members ------------------------------------------------------------------------------------
    def member_key(
        self, member_id: str, *, statuses: tuple[str, ...] = (MemberStatus.ACTIVE,)
    ) -> ec.EllipticCurvePublicKey | None:
        """Public key of a member in one of ``statuses`` (the signature check's lookup)."""
        cached = self._member_keys.get(member_id)
        if cached is None:
            with self._lock:
                row = self._db.execute(
                    "SELECT status, cert_pem FROM members WHERE member_id=?", (member_id,)
                ).fetchone()
            if row is None:
                return None
            public_key = load_certificate(row["cert_pem"]).public_key()
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                return None  # nothing it signs could verify: members sign ES384 (P-384) only
            cached = self._member_keys[member_id] = (str(row["status"]), public_key)
        status, key = cached
        return key if status in statuses else None

    def member(self, member_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM members WHERE member_id=?", (member_id,)).fetchone()
        return None if row is None else _member_document(row)

    def members(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM members ORDER BY seqno, member_id").fetchall()
        return [_member_document(row) for row in rows]

    def _active_members(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT member_id FROM members WHERE status=?", (MemberStatus.ACTIVE,))}

    def add_member(self, cert_pem: str, name: str, data: dict[str, Any]) -> None:
        cert = load_certificate(cert_pem)
        if self.member(member_id_of(cert)) is not None:
            raise ConflictError(
                f"member {member_id_of(cert)[:16]}… joined while this proposal was open", hint="nothing to do"
            )
        self._db.execute(
            "INSERT INTO members VALUES (?,?,?,?,?,?)",
            (
                member_id_of(cert),
                name or _common_name(cert),
                cert_pem,
                MemberStatus.ACCEPTED,
                canonical_json(data).decode(),
                self._head[0],
            ),
        )

    def activate_member(self, request: VerifiedRequest) -> dict[str, Any]:
        with self._write(request):
            member = self.member(request.signer)
            if member is None or member["status"] != MemberStatus.ACCEPTED:
                raise ConflictError(
                    "only a member voted in by set_member and not yet active can activate",
                    hint="ask the consortium to accept a `member add` proposal for you first",
                )
            self._member_write(request, "member.activate")
            self._db.execute("UPDATE members SET status=? WHERE member_id=?", (MemberStatus.ACTIVE, request.signer))
            self._member_keys.pop(request.signer, None)
        return member | {"status": MemberStatus.ACTIVE}  # the one column the update changed

    # -- contracts ----------------------------------------------------------------------------------
    def contract(self, contract_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM contracts WHERE id=?", (contract_id,)).fetchone()
        return None if row is None else _contract_document(row)

    def get_contract(self, contract_id: str) -> dict[str, Any]:
        with self._lock:
            contract = self.contract(contract_id)
        if contract is None:
            raise NotFoundError(
                f"contract '{contract_id}' does not exist",
                hint="list contracts with `cleanroom governance contract list`",
            )
        return contract

    def contracts(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM contracts ORDER BY seqno").fetchall()
        return [_contract_document(row) for row in rows]

    def put_contract(self, request: VerifiedRequest, contract_id: str) -> dict[str, Any]:
        """Create a Draft (no version given) or update one (current version required)."""
        check_contract_id(contract_id)
        data, version = request.body.get("data"), request.body.get("version")
        if not isinstance(data, dict):
            raise InvalidInputError(
                "contract data must be a JSON object",
                hint="pass the merged spec from `cleanroom config view` as --data",
            )
        constitution.check_contract_data(data)  # a spec the runtime reads must be a valid one
        with self._write(request):
            current = self.contract(contract_id)
            if current is None and version:
                raise NotFoundError(
                    f"contract '{contract_id}' does not exist, so it has no version {version!r}",
                    hint="create it without --version",
                )
            if current is not None:
                if current["state"] == ContractState.ACCEPTED:
                    raise ConflictError(
                        f"contract '{contract_id}' is accepted and immutable",
                        hint="create a new contract id for a changed contract",
                    )
                if not version:
                    raise ConflictError(
                        f"contract '{contract_id}' already exists",
                        hint="pass --version (from `contract show`) to update it",
                    )
                if version != current["version"]:
                    raise StaleVersionError(
                        f"contract '{contract_id}' was changed since version {version!r}",
                        hint="run `cleanroom governance contract show` and retry with its version",
                    )
            seqno = self._member_write(request, "contract.update" if current else "contract.create")
            new_version = ledger.payload_digest(request.raw)[:32]
            if current is None:
                self._db.execute(
                    "INSERT INTO contracts VALUES (?,?,?,?,?,?,?,?)",
                    (
                        contract_id,
                        canonical_json(data).decode(),
                        new_version,
                        ContractState.DRAFT,
                        None,
                        None,
                        request.signer,
                        seqno,
                    ),
                )
            else:
                if current["state"] == ContractState.PROPOSED:
                    self._close(current["proposalId"], ProposalState.DROPPED, "the contract was updated")
                self._db.execute(
                    "UPDATE contracts SET data=?, version=?, state=?, proposal_id=NULL WHERE id=?",
                    (canonical_json(data).decode(), new_version, ContractState.DRAFT, contract_id),
                )
        return self.get_contract(contract_id)

    def mark_contract_accepted(self, contract_id: str, contract_hash: str) -> None:
        self._db.execute(
            "UPDATE contracts SET state=?, hash=? WHERE id=?", (ContractState.ACCEPTED, contract_hash, contract_id)
        )

    # -- proposals ----------------------------------------------------------------------------------
    def _proposal_row(self, proposal_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = self._db.execute("SELECT * FROM proposals WHERE id=?", (proposal_id,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"proposal {proposal_id} does not exist",
                hint="list proposals with `cleanroom governance proposal list`",
            )
        return row

    def proposal(self, proposal_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._proposal_row(proposal_id)
            ballots = {
                r["member_id"]: r["vote"]
                for r in self._db.execute("SELECT member_id, vote FROM ballots WHERE proposal_id=?", (proposal_id,))
            }
            return {
                "proposalId": row["id"],
                "action": row["action"],
                "args": json.loads(row["args"]),
                "proposerId": row["proposer"],
                "proposalState": row["state"],
                "contractId": row["contract_id"],
                "ballots": ballots,
                "failure": row["failure"],
                "seqno": row["seqno"],
            }

    def proposals(
        self, *, state: str | None = None, contract_id: str | None = None, action: str | None = None
    ) -> list[dict[str, Any]]:
        query, params = "SELECT id FROM proposals WHERE 1=1", []
        for column, value in (("state", state), ("contract_id", contract_id), ("action", action)):
            if value:
                query += f" AND {column}=?"
                params.append(value)
        with self._lock:
            ids = [r[0] for r in self._db.execute(query + " ORDER BY seqno", params)]
            return [self.proposal(i) for i in ids]

    def _open_ids(self, contract_id: str, action: str) -> list[str]:
        return [
            r[0]
            for r in self._db.execute(
                "SELECT id FROM proposals WHERE contract_id=? AND action=? AND state=? ORDER BY seqno",
                (contract_id, action, ProposalState.OPEN),
            )
        ]

    def create_proposal(self, request: VerifiedRequest) -> dict[str, Any]:
        action, args = request.body.get("action"), request.body.get("args", {})
        with self._write(request):
            constitution.validate(action, args, self)
            if action == Action.SET_CONTRACT:  # freeze what is being voted on
                contract = self.contract(args["contract_id"])
                assert contract is not None, "validate() refuses a proposal for an unknown contract"
                args = {"contract_id": args["contract_id"], "version": args["version"], "data": contract["data"]}
            seqno = self._member_write(request, "proposal.create")
            proposal_id = request.digest
            self._db.execute(
                "INSERT INTO proposals VALUES (?,?,?,?,?,?,?,?)",
                (
                    proposal_id,
                    action,
                    canonical_json(args).decode(),
                    request.signer,
                    ProposalState.OPEN,
                    args.get("contract_id"),
                    None,
                    seqno,
                ),
            )
            if action == Action.SET_CONTRACT:
                self._db.execute(
                    "UPDATE contracts SET state=?, proposal_id=? WHERE id=?",
                    (ContractState.PROPOSED, proposal_id, args["contract_id"]),
                )
        return self.proposal(proposal_id)

    def _close(self, proposal_id: str, state: str, failure: str | None = None) -> None:
        row = self._proposal_row(proposal_id)
        self._db.execute("UPDATE proposals SET state=?, failure=? WHERE id=?", (state, failure, proposal_id))
        if row["action"] == Action.SET_CONTRACT and state != ProposalState.ACCEPTED:
            self._db.execute(
                "UPDATE contracts SET state=?, proposal_id=NULL WHERE id=? AND proposal_id=?",
                (ContractState.DRAFT, row["contract_id"], proposal_id),
            )

    def ballot(self, request: VerifiedRequest, proposal_id: str) -> dict[str, Any]:
        """Record a ballot; resolve and apply the proposal when it decides it."""
        vote = request.body.get("ballot")
        if vote not in VOTES:
            raise InvalidInputError(f"ballot {vote!r} is not a vote", hint="vote accept or reject")
        with self._write(request):
            row = self._proposal_row(proposal_id)
            previous = self._db.execute(
                "SELECT vote FROM ballots WHERE proposal_id=? AND member_id=?", (proposal_id, request.signer)
            ).fetchone()
            if previous is not None:
                if previous["vote"] != vote:
                    raise ConflictError(
                        f"you already voted {previous['vote']} on proposal {proposal_id[:16]}…",
                        hint="a ballot cannot be changed once cast",
                    )
                return self.proposal(proposal_id) | {"idempotent": True}
            if row["state"] != ProposalState.OPEN:
                raise ConflictError(
                    f"proposal {proposal_id[:16]}… is {row['state']}, not Open", hint="only open proposals take ballots"
                )
            seqno = self._member_write(request, "ballot")
            self._db.execute("INSERT INTO ballots VALUES (?,?,?,?)", (proposal_id, request.signer, vote, seqno))
            ballots = {
                r["member_id"]: r["vote"]
                for r in self._db.execute("SELECT member_id, vote FROM ballots WHERE proposal_id=?", (proposal_id,))
            }
            outcome = constitution.resolve(ballots, self._active_members())
            if outcome == ProposalState.ACCEPTED:
                self._accept(row)
            elif outcome != ProposalState.OPEN:
                self._close(proposal_id, outcome)
        return self.proposal(proposal_id)

    def _accept(self, row: sqlite3.Row) -> None:
        args = json.loads(row["args"])
        self._db.execute("SAVEPOINT apply")
        try:
            constitution.apply(row["action"], args, self, row["id"])
        except CleanroomError as exc:
            self._db.execute("ROLLBACK TO apply")
            self._db.execute("RELEASE apply")
            self._close(row["id"], ProposalState.FAILED, exc.one_line())
            return
        self._db.execute("RELEASE apply")
        self._db.execute("UPDATE proposals SET state=? WHERE id=?", (ProposalState.ACCEPTED, row["id"]))
        if row["contract_id"]:  # an accepted proposal supersedes open ones for the same thing
            for other in self._open_ids(row["contract_id"], row["action"]):
                self._close(other, ProposalState.DROPPED, f"superseded by {row['id']}")

    def withdraw(self, request: VerifiedRequest, proposal_id: str) -> dict[str, Any]:
        with self._write(request):
            row = self._proposal_row(proposal_id)
            if row["proposer"] != request.signer:
                raise AccessDeniedError(
                    "only the proposer may withdraw a proposal", hint="vote reject instead to veto it"
                )
            if row["state"] != ProposalState.OPEN:
                raise ConflictError(
                    f"proposal {proposal_id[:16]}… is {row['state']}, not Open",
                    hint="only open proposals can be withdrawn",
                )
            self._member_write(request, "proposal.withdraw")
            self._close(proposal_id, ProposalState.WITHDRAWN)
        return self.proposal(proposal_id)

    # -- contract documents, CA, options ------------------------------------------------------------
    def set_document(self, contract_id: str, kind: str, data: dict[str, Any], proposal_id: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO documents VALUES (?,?,?,?)",
            (contract_id, kind, canonical_json(data).decode(), proposal_id),
        )

    def document(self, contract_id: str, kind: str) -> dict[str, Any]:
        if kind not in DOCUMENT_ACTIONS:
            raise InvalidInputError(f"document kind {kind!r} is not known", hint=f"use {', '.join(DOCUMENT_ACTIONS)}")
        with self._lock:
            self.get_contract(contract_id)
            row = self._db.execute(
                "SELECT data, proposal_id FROM documents WHERE contract_id=? AND kind=?", (contract_id, kind)
            ).fetchone()
            data = json.loads(row["data"]) if row else None
            return {
                "contractId": contract_id,
                "data": data,
                "hash": document_hash(data) if data else "",
                "acceptedProposalId": row["proposal_id"] if row else "",
                "proposalIds": self._open_ids(contract_id, DOCUMENT_ACTIONS[kind]),
            }

    def accepted_policy_hash(self, contract_id: str) -> str | None:
        """The measurement an attested clean room of this contract must present (None: no policy yet)."""
        policy = self.document(contract_id, "clean_room_policy")["data"]
        return policy_hash_of(policy) if policy else None

    def enable_ca(self, contract_id: str, proposal_id: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO cas (contract_id, proposal_id) VALUES (?,?)", (contract_id, proposal_id)
        )

    def ca_info(self, contract_id: str) -> dict[str, Any]:
        with self._lock:
            self.get_contract(contract_id)
            row = self._db.execute(
                "SELECT proposal_id, cert_pem FROM cas WHERE contract_id=?", (contract_id,)
            ).fetchone()
            return {
                "contractId": contract_id,
                "enabled": row is not None,
                "caCert": (row["cert_pem"] or "") if row else "",
                "acceptedProposalId": row["proposal_id"] if row else "",
                "proposalIds": self._open_ids(contract_id, Action.ENABLE_CA),
            }

    def generate_ca_key(self, request: VerifiedRequest, contract_id: str) -> dict[str, Any]:
        with self._write(request):
            row = self._db.execute("SELECT cert_pem FROM cas WHERE contract_id=?", (contract_id,)).fetchone()
            if row is None:
                raise ConflictError(
                    f"the CA of contract '{contract_id}' is not enabled",
                    hint="propose and accept it with `cleanroom governance ca propose-enable`",
                )
            if row["cert_pem"]:
                raise ConflictError(f"contract '{contract_id}' already has a CA key", hint="show it with `ca show`")
            self._member_write(request, "ca.generate_key")
            key_pem, cert_pem = ca.generate_ca(contract_id)
            self._db.execute(
                "UPDATE cas SET key_pem=?, cert_pem=? WHERE contract_id=?", (key_pem, cert_pem.decode(), contract_id)
            )
        return self.ca_info(contract_id)

    def set_option(self, contract_id: str, option: str, status: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO options VALUES (?,?,?)", (contract_id, option, status))

    def runtime_option(self, contract_id: str, option: str) -> dict[str, Any]:
        with self._lock:
            contract = self.get_contract(contract_id)
            if option == "execution":
                disabled_by = [
                    r[0]
                    for r in self._db.execute(
                        "SELECT member_id FROM execution_disabled WHERE contract_id=? ORDER BY member_id",
                        (contract_id,),
                    )
                ]
                status = (
                    OptionStatus.ENABLED
                    if contract["state"] == ContractState.ACCEPTED and not disabled_by
                    else OptionStatus.DISABLED
                )
                return {"contractId": contract_id, "option": option, "status": status, "disabledBy": disabled_by}
            if option not in VOTED_OPTIONS:
                raise InvalidInputError(
                    f"runtime option {option!r} is not known", hint=f"use one of: {', '.join(RUNTIME_OPTIONS)}"
                )
            row = self._db.execute(
                "SELECT status FROM options WHERE contract_id=? AND option=?", (contract_id, option)
            ).fetchone()
            action = f"enable_{option}"
            return {
                "contractId": contract_id,
                "option": option,
                "status": row["status"] if row else OptionStatus.DISABLED,
                "proposalIds": self._open_ids(contract_id, action) + self._open_ids(contract_id, f"disable_{option}"),
            }

    def set_execution(self, request: VerifiedRequest, contract_id: str) -> dict[str, Any]:
        """Kill switch: any member disables alone; execution resumes when every disabler re-enables."""
        action = request.body.get("action")
        if action not in ("enable", "disable"):
            raise InvalidInputError(f"runtime option action {action!r} is not valid", hint="use enable or disable")
        with self._write(request):
            self.get_contract(contract_id)
            disabled = (
                self._db.execute(
                    "SELECT 1 FROM execution_disabled WHERE contract_id=? AND member_id=?",
                    (contract_id, request.signer),
                ).fetchone()
                is not None
            )
            if action == "disable" and not disabled:
                self._member_write(request, "runtime_option.disable")
                self._db.execute("INSERT INTO execution_disabled VALUES (?,?)", (contract_id, request.signer))
            elif action == "enable" and disabled:
                self._member_write(request, "runtime_option.enable")
                self._db.execute(
                    "DELETE FROM execution_disabled WHERE contract_id=? AND member_id=?", (contract_id, request.signer)
                )
        return self.runtime_option(contract_id, "execution")

    def execution_enabled(self, contract_id: str) -> bool:
        return bool(self.runtime_option(contract_id, "execution")["status"] == OptionStatus.ENABLED)

    # -- traffic split between serving applications (core.governance.traffic) ------------------------
    def traffic(self, contract_id: str) -> dict[str, Any]:
        """The ingress's feed, plus the serving applications and open split proposals for people."""
        with self._lock:
            contract = self.get_contract(contract_id)
            return traffic.feed(self._db, contract_id) | {
                "applications": traffic.serving_applications(contract),
                "proposalIds": self._open_ids(contract_id, Action.SET_TRAFFIC_SPLIT),
            }

    def check_traffic_split(self, contract_id: str, split: object) -> dict[str, int]:
        return traffic.check_split(self.get_contract(contract_id), split)

    def set_traffic_split(self, contract_id: str, split: object, proposal_id: str) -> None:
        checked = self.check_traffic_split(contract_id, split)
        traffic.store(self._db, contract_id, checked, seqno=self._head[0], proposal_id=proposal_id)

    def rollback_traffic(self, request: VerifiedRequest, contract_id: str) -> dict[str, Any]:
        """Any member alone sends all traffic to one serving application (ledgered as signed).

        Open split proposals are dropped: ballots cast before the incident must not undo the
        rollback when the last of them arrives; a member proposes again once it is understood."""
        with self._write(request):
            application = traffic.check_rollback(self.get_contract(contract_id), request.body.get("to"))
            seqno = self._member_write(request, "traffic.rollback")
            traffic.store(self._db, contract_id, {application: 100}, seqno=seqno, rolled_back_to=application)
            for proposal_id in self._open_ids(contract_id, Action.SET_TRAFFIC_SPLIT):
                self._close(proposal_id, ProposalState.DROPPED, f"superseded by a rollback to '{application}'")
        return self.traffic(contract_id)

    # -- secrets, tokens ----------------------------------------------------------------------------
    def put_secret(self, request: VerifiedRequest, contract_id: str, name: str) -> dict[str, Any]:
        """Store a secret sent as ``signing.sign_secret_put`` does: the value rides in the unprotected
        header and the signed payload commits to it, so the ledger entry holds no value.

        Who may write: ``dek-<asset>`` only the asset's owner as the contract names it (the
        runtime seals that asset with this DEK, so nobody else may choose it); any other name
        its first writer."""
        if not name or len(name) > 128 or "/" in name:
            raise InvalidInputError(f"secret name {name!r} is not valid", hint="use 1-128 characters without '/'")
        value = self._secret_value(request)
        with self._write(request):
            contract = self.get_contract(contract_id)
            dek = name.startswith(DEK_SECRET_PREFIX)
            if dek:  # the owner the contract names, even over a row squatted before this rule existed
                self._check_asset_owner(contract, name[len(DEK_SECRET_PREFIX) :], request.signer)
            owner = self._db.execute(
                "SELECT owner FROM secrets WHERE contract_id=? AND name=?", (contract_id, name)
            ).fetchone()
            if owner is not None and owner["owner"] != request.signer and not dek:
                raise AccessDeniedError(
                    f"secret '{name}' of contract '{contract_id}' belongs to another member, "
                    f"{self._member_label(owner['owner'])}",
                    hint="choose another secret name",
                )
            seqno = self._member_write(request, "secret.put")
            self._db.execute(
                "INSERT OR REPLACE INTO secrets VALUES (?,?,?,?,?)", (contract_id, name, value, request.signer, seqno)
            )
        return {"contractId": contract_id, "name": name, "owner": request.signer, "seqno": seqno}

    @staticmethod
    def _secret_value(request: VerifiedRequest) -> bytes:
        header = request.unprotected or {}
        value, nonce = header.get(SECRET_VALUE), header.get(SECRET_NONCE)
        if "value" in request.body:
            raise InvalidInputError(
                "secret value is in the signed payload, which the public ledger keeps",
                hint="send it as `cleanroom` clients do: value and nonce in the unprotected "
                "header, {value_commitment} signed",
            )
        if not isinstance(value, bytes) or not isinstance(nonce, bytes) or len(nonce) != SECRET_NONCE_BYTES:
            raise InvalidInputError(
                f"secret PUT needs {SECRET_VALUE!r} (bytes) and a {SECRET_NONCE_BYTES}-byte "
                f"{SECRET_NONCE!r} in the COSE unprotected header",
                hint="send it with GovernanceClient.put_secret",
            )
        if request.body.get("value_commitment") != secret_commitment(nonce, value):
            raise InvalidInputError(
                "secret value does not match the signed value_commitment",
                hint="sign SHA-256(nonce || value) of the value you send",
            )
        return value

    def _member_label(self, member_id: str) -> str:
        member = self._db.execute("SELECT name FROM members WHERE member_id=?", (member_id,)).fetchone()
        return f"{member['name'] if member else 'unknown'} ({member_id[:16]}…)"

    def _check_asset_owner(self, contract: dict[str, Any], asset: str, signer: str) -> None:
        data = contract["data"]
        assets = [
            a
            for kind in ("datasources", "datasinks")
            for a in (data.get(kind) or [])
            if isinstance(a, dict) and a.get("name") == asset
        ]
        if not assets:
            raise AccessDeniedError(
                f"contract '{contract['id']}' names no datasource or datasink '{asset}', "
                f"so nobody may put '{DEK_SECRET_PREFIX}{asset}'",
                hint="put the DEK of an asset the contract names, as its owner",
            )
        owner = assets[0].get("owner")
        if owner != signer:
            raise AccessDeniedError(
                f"'{DEK_SECRET_PREFIX}{asset}' of contract '{contract['id']}' is the DEK of "
                f"'{asset}', owned by {self._member_label(str(owner))}; only its owner may put it",
                hint="each party wraps only its own assets (`cleanroom config wrap-deks`)",
            )

    def secrets(self, contract_id: str) -> list[dict[str, Any]]:
        with self._lock:
            self.get_contract(contract_id)
            return [
                {"name": r["name"], "owner": r["owner"], "seqno": r["seqno"]}
                for r in self._db.execute(
                    "SELECT name, owner, seqno FROM secrets WHERE contract_id=? ORDER BY name", (contract_id,)
                )
            ]

    def contract_parties(self, contract: dict[str, Any]) -> set[str]:
        """Members an accepted contract lets call its clean room: the ``parties`` its data names
        (the merged spec lists each party's ``member_id``), else the members who accepted it. A
        member who joined the consortium later is neither, so it gets no token for the contract."""
        parties = contract["data"].get("parties")
        named = (
            {p["member_id"] for p in parties if isinstance(p, dict) and isinstance(p.get("member_id"), str)}
            if isinstance(parties, list)
            else set()
        )
        if named:
            return named
        return {
            r[0]
            for r in self._db.execute(
                "SELECT member_id FROM ballots WHERE proposal_id=? AND vote=?", (contract["proposalId"], Vote.ACCEPT)
            )
        }

    def issue_token(self, request: VerifiedRequest, contract_id: str) -> dict[str, Any]:
        """A short-lived ES384 JWT naming the member and contract, for the clean room's ingress."""
        with self._write(request):
            contract = self.get_contract(contract_id)
            if contract["state"] != ContractState.ACCEPTED:
                raise ConflictError(
                    f"contract '{contract_id}' is {contract['state']}; tokens are for accepted contracts",
                    hint="get the contract accepted first",
                )
            if request.signer not in self.contract_parties(contract):
                raise AccessDeniedError(
                    f"member {request.signer[:12]}… is not a party of contract '{contract_id}'",
                    hint="tokens are issued only to the parties the contract names",
                )
            self._member_write(request, "token.issue")
        now = int(time.time())
        claims = {
            "iss": self.token_issuer,
            "sub": request.signer,
            "aud": f"cleanroom:{contract_id}",
            "contract_id": contract_id,
            "iat": now,
            "nbf": now - 5,
            "exp": now + TOKEN_TTL_SECONDS,
        }
        token = self.token_keys.current.sign(claims)
        return {"token": token, "expiresAt": claims["exp"], "audience": claims["aud"], "issuer": self.token_issuer}

    @property
    def token_issuer(self) -> str:
        return f"cleanroom-governance:{self.identity.service_id[:16]}"

    @property
    def token_kid(self) -> str:
        return self.token_keys.current.kid

    def jwks(self) -> dict[str, Any]:
        """The current token key and retired ones whose tokens may still be valid (``token_keys``)."""
        return self.token_keys.jwks()

    def rotate_token_key(self, request: VerifiedRequest) -> dict[str, Any]:
        """Any active member rotates alone: a fresh key only narrows what a leaked old one can sign."""
        with self._write(request):
            seqno = self._member_write(request, "token_key.rotate")
            new = self.token_keys.rotate(seqno)
        return {"kid": new.kid, "seqno": seqno} | self.token_keys.jwks()

    # -- client applications (rules and writes in ``core.governance.client_apps``) --------------------
    def client_app(self, name: str) -> dict[str, Any] | None:
        return self.client_apps.get(name)

    def register_client_app(self, app: dict[str, Any], proposal_id: str) -> None:
        self.client_apps.register(app, proposal_id)

    # -- attested clean-room calls ------------------------------------------------------------------
    def _attested(self, contract_id: str, token: Any, *, purpose: str) -> dict[str, Any]:
        """Claims of a clean room of ``contract_id`` running the accepted policy, with execution on.

        ``purpose`` "secret" and "endorse" hand out what only a running workload may have, so
        they need a workload attestation, the accepted policy and execution enabled. "event"
        is the audit trail: the kill switch stops execution, not the record of how a run
        ended, and a clean room measured with another policy (a changed spec) may still say
        that it failed; its events are kept, marked with the policy hash it did run (see
        ``append_event``). Service tokens (``SERVICE_ATTESTATION_TYPES``) may only append events.
        """
        if not isinstance(token, str) or not token:
            raise AccessDeniedError("attestation token missing", hint="send the clean room's attestation token")
        claims = self.attestation_verifier(token)
        if purpose != "event" and claims.get("attestation_type") in SERVICE_ATTESTATION_TYPES:
            raise AccessDeniedError(
                f"a {claims['attestation_type']} token may only append events, not {purpose}",
                hint="secrets and CA endorsement need the workload's own attestation",
            )
        with self._lock:
            self.get_contract(contract_id)
            if claims.get("contract_id") != contract_id:
                raise AccessDeniedError(
                    f"attestation is for contract {claims.get('contract_id')!r}, not '{contract_id}'",
                    hint="attest the clean room of this contract",
                )
            expected = self.accepted_policy_hash(contract_id)
            if expected is None:
                raise AccessDeniedError(
                    f"contract '{contract_id}' has no accepted clean-room policy",
                    hint="propose and accept one with `cleanroom governance deployment policy propose`",
                )
            if purpose == "event":
                return claims
            if claims.get("policy_hash") != expected:
                raise AccessDeniedError(
                    "the clean room's measured policy is not the accepted clean-room policy",
                    hint="deploy exactly the accepted deployment spec",
                )
            if not self.execution_enabled(contract_id):
                raise AccessDeniedError(
                    f"execution of contract '{contract_id}' is disabled",
                    hint="every member who disabled it must re-enable it",
                )
        return claims

    def _attested_write(self, contract_id: str, kind: str, body: dict[str, Any]) -> int:
        record = {k: v for k, v in body.items() if k != "attestation"}
        record["attestation_sha256"] = ledger.payload_digest(str(body.get("attestation", "")).encode())
        return self._append(kind, f"{ledger.ATTESTED_PREFIX}{contract_id}", canonical_json(record))

    def get_secret(self, contract_id: str, name: str, body: dict[str, Any]) -> tuple[bytes, str]:
        """The secret's value and the member who wrote it (the runtime checks a DEK's writer is
        the asset's owner before it uses it)."""
        claims = self._attested(contract_id, body.get("attestation"), purpose="secret")
        with self._lock:
            if name.startswith(DEK_SECRET_PREFIX):
                self._check_privacy_reservation(contract_id, name[len(DEK_SECRET_PREFIX) :], claims)
            row = self._db.execute(
                "SELECT value, owner FROM secrets WHERE contract_id=? AND name=?", (contract_id, name)
            ).fetchone()
        if row is None:
            raise NotFoundError(
                f"secret '{name}' of contract '{contract_id}' does not exist",
                hint="the owning member must put it first",
            )
        return bytes(row["value"]), str(row["owner"])

    def endorse(self, contract_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._attested(contract_id, body.get("attestation"), purpose="endorse")
        with self._write():
            row = self._db.execute("SELECT key_pem, cert_pem FROM cas WHERE contract_id=?", (contract_id,)).fetchone()
            if row is None or not row["cert_pem"]:
                raise ConflictError(
                    f"contract '{contract_id}' has no CA key",
                    hint="enable the CA and run `cleanroom governance ca generate-key`",
                )
            cert = ca.endorse_csr(bytes(row["key_pem"]), row["cert_pem"].encode(), str(body.get("csr", "")))
            self._attested_write(contract_id, "ca.endorse", body)
        return {"certificate": cert.decode(), "caCert": row["cert_pem"]}

    def append_event(self, contract_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Record a clean-room event, also while execution is disabled (a stopped run still
        reports stopping, exited and sealed). An event from a clean room measured with a policy
        other than the accepted one is kept with ``data.unaccepted_policy_hash`` naming what it
        ran, so nobody can mistake it for the accepted clean room's word."""
        claims = self._attested(contract_id, body.get("attestation"), purpose="event")
        category, kind = body.get("category", "audit"), body.get("type")
        if category not in EVENT_CATEGORIES or not isinstance(kind, str) or not kind:
            raise InvalidInputError(
                "event needs a type and a category of audit, telemetry or logging", hint="send {type, category, data}"
            )
        data = body.get("data", {})
        if not isinstance(data, dict):
            raise InvalidInputError("event data must be a JSON object", hint="send {type, category, data: {...}}")
        if claims.get("policy_hash") != self.accepted_policy_hash(contract_id):
            data = {**data, "unaccepted_policy_hash": str(claims.get("policy_hash"))}
        with self._write():
            ledger_seqno = self._attested_write(contract_id, "event.append", body)
            seqno = self._insert_event(contract_id, ledger_seqno, kind, category, data)
        self.on_event(contract_id)
        return {"contractId": contract_id, "seqno": seqno}

    def _insert_event(self, contract_id: str, ledger_seqno: int, kind: str, category: str, data: dict[str, Any]) -> int:
        seqno = (
            self._db.execute("SELECT MAX(seqno) FROM events WHERE contract_id=?", (contract_id,)).fetchone()[0] or 0
        ) + 1
        self._db.execute(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?)",
            (contract_id, seqno, ledger_seqno, time.time(), kind, category, canonical_json(data).decode()),
        )
        return seqno

    def events(self, contract_id: str, from_seqno: int = 1, limit: int = 1000) -> dict[str, Any]:
        """Events from ``from_seqno``; telemetry/logging ones only if the contract enabled them."""
        with self._lock:
            self.get_contract(contract_id)
            visible = {"audit"} | {
                opt
                for opt in ("telemetry", "logging")
                if self.runtime_option(contract_id, opt)["status"] == OptionStatus.ENABLED
            }
            rows = self._db.execute(
                "SELECT * FROM events WHERE contract_id=? AND seqno>=? ORDER BY seqno LIMIT ?",
                (contract_id, from_seqno, limit),
            ).fetchall()
            last = self._db.execute("SELECT MAX(seqno) FROM events WHERE contract_id=?", (contract_id,)).fetchone()[0]
        events = [
            {
                "seqno": r["seqno"],
                "timestamp": r["timestamp"],
                "type": r["type"],
                "category": r["category"],
                "data": json.loads(r["data"]),
                "ledgerSeqno": r["ledger_seqno"],
            }
            for r in rows
            if r["category"] in visible
        ]
        next_seqno = (rows[-1]["seqno"] + 1) if rows else max(from_seqno, (last or 0) + 1)
        return {"contractId": contract_id, "events": events, "nextSeqno": next_seqno}

    # -- model registry (rules and writes in ``core.governance.model_registry``) ------------------------
    def check_model_publish(self, model: str, version: str) -> None:
        self.models.check_publish(model, version)

    def publish_model_version(self, model: str, version: str, proposal_id: str) -> None:
        self.models.publish(model, version, proposal_id)

    def check_served_models(self, data: dict[str, Any]) -> None:
        self.models.check_servable(data)

    # -- privacy ledger (rules in ``core.governance.privacy``) ---------------------------------------
    def _privacy(self) -> privacy.PrivacyLedger:
        """The privacy state, rebuilt from its entries in ledger order: the same replay an offline
        verifier runs, so what the service enforces is what ``privacy verify`` recomputes. A few
        entries per run, so rebuilding per call costs far less than the run it guards."""
        with self._lock:
            model = privacy.PrivacyLedger()
            for row in self._db.execute("SELECT seqno, kind, signer, record FROM privacy_entries ORDER BY seqno"):
                model.apply(row["seqno"], row["kind"], row["signer"], json.loads(row["record"]))
            return model

    def _privacy_write(self, kind: str, signer: str, request: bytes, record: dict[str, Any]) -> int:
        seqno = self._append(kind, signer, request)
        self._db.execute(
            "INSERT INTO privacy_entries VALUES (?,?,?,?)", (seqno, kind, signer, canonical_json(record).decode())
        )
        return seqno

    def _service_privacy_write(self, kind: str, record: dict[str, Any]) -> int:
        """A privacy entry the service itself decides (a registration, an accepted raise), signed by it."""
        path = "/" + kind.replace(".", "/")
        request = sign_es384(self.identity.private_key, kid=self.identity.service_id, path=path, body=record)
        return self._privacy_write(kind, ledger.SERVICE_SIGNER, request, record)

    def _attested_privacy_write(self, contract_id: str, kind: str, record: dict[str, Any]) -> int:
        return self._privacy_write(kind, f"{ledger.ATTESTED_PREFIX}{contract_id}", canonical_json(record), record)

    def check_privacy_declarations(self, contract_id: str, data: dict[str, Any]) -> None:
        """Refuse a contract declaring another budget for a dataset the privacy ledger knows."""
        self._privacy().check_declarations(contract_id, privacy.declared_budgets(data))

    def register_privacy(self, contract_id: str, data: dict[str, Any]) -> None:
        """On acceptance: register the contract's budgeted datasources the ledger does not know yet."""
        new = self._privacy().check_declarations(contract_id, privacy.declared_budgets(data))
        if new:
            self._service_privacy_write(
                privacy.REGISTER, {"contract_id": contract_id, "datasets": [item.record() for item in new]}
            )

    def check_privacy_raise(self, dataset: str, epsilon_total: float) -> None:
        self._privacy().check_raise(dataset, epsilon_total)

    def raise_privacy_budget(self, dataset: str, epsilon_total: float, proposal_id: str) -> None:
        self._privacy().check_raise(dataset, epsilon_total)
        self._service_privacy_write(
            privacy.RAISE, {"dataset": dataset, "epsilon_total": epsilon_total, "proposal_id": proposal_id}
        )

    def lower_privacy_budget(self, request: VerifiedRequest) -> dict[str, Any]:
        """The owner lowers its dataset's budget alone: lowering only ever protects its own rows."""
        dataset, epsilon_total = request.body.get("dataset"), request.body.get("epsilon_total")
        if not isinstance(dataset, str) or not dataset:
            raise InvalidInputError("lowering a budget needs a dataset", hint="pass --dataset OWNER/NAME or NAME")
        if isinstance(epsilon_total, bool) or not isinstance(epsilon_total, int | float) or not epsilon_total > 0:
            raise InvalidInputError(
                f"epsilon_total {epsilon_total!r} is not a positive number", hint="pass --epsilon-total X (X > 0)"
            )
        resolved = privacy.owned_dataset(dataset, request.signer)
        with self._write(request):
            self._privacy().check_lower(resolved, float(epsilon_total), request.signer)
            seqno = self._member_write(request, privacy.LOWER)
            self._db.execute(
                "INSERT INTO privacy_entries VALUES (?,?,?,?)",
                (seqno, privacy.LOWER, request.signer, canonical_json(request.body).decode()),
            )
        return self._privacy().budget(resolved).view(resolved) | {"seqno": seqno}

    def reserve_privacy(self, contract_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Charge k * epsilon on every source dataset of the application's join, before any DEK.

        The plan is read from the accepted deployment spec (the measured one every member voted),
        never from the clean room's request: a workload cannot ask for a smaller charge. A refusal
        is itself a ledger entry and an audit event, so every party sees which dataset ran out."""
        claims = self._attested(contract_id, body.get("attestation"), purpose="secret")
        instance = privacy.instance_of(claims)
        application = body.get("application")
        if not isinstance(application, str) or not application:
            raise InvalidInputError(
                "a privacy reservation names its application", hint="send {attestation, application}"
            )
        spec = self.document(contract_id, "deployment_spec")["data"]
        if spec is None:
            raise ConflictError(
                f"contract '{contract_id}' has no accepted deployment spec",
                hint="propose and accept one with `cleanroom governance deployment spec propose`",
            )
        plan = privacy.run_plan(contract_id, spec, application)
        base = {
            "contract_id": contract_id,
            "application": application,
            "instance": instance,
            "attestation_sha256": ledger.payload_digest(str(body["attestation"]).encode()),
        }
        refusal: AccessDeniedError | None = None
        with self._write():
            model = self._privacy()
            short = model.shortfall(plan)
            if short is not None:
                dataset, needed, left, total = short
                name = model.budget(dataset).name
                seqno = self._attested_privacy_write(
                    contract_id, privacy.REFUSE, base | {"dataset": dataset, "needed": needed, "left": left}
                )
                self._insert_event(
                    contract_id,
                    seqno,
                    "privacy_refused",
                    "audit",
                    {"dataset": name, "datasetId": dataset, "application": application, "needed": needed, "left": left},
                )
                refusal = AccessDeniedError(
                    f"run needs epsilon {needed:.2f} of dataset '{name}' but {left:.2f} of {total:.2f} is left",
                    hint="no key was released; the dataset's owner may raise the budget with every member's vote "
                    "(`cleanroom governance privacy budget propose-raise`)",
                )
            else:
                run_id = uuid.uuid4().hex
                record = base | {
                    "run_id": run_id,
                    "datasets": list(plan.datasets),
                    "epsilon": plan.epsilon,
                    "delta": plan.delta,
                    "accountant": plan.accountant,
                    "max_rows_per_key": plan.max_rows_per_key,
                    "epsilon_reserved": plan.charge,
                }
                seqno = self._attested_privacy_write(contract_id, privacy.RESERVE, record)
                model.apply(seqno, privacy.RESERVE, f"{ledger.ATTESTED_PREFIX}{contract_id}", record)
                views = [model.budget(d).view(d) for d in plan.datasets]
                self._insert_event(
                    contract_id,
                    seqno,
                    "privacy_reserved",
                    "audit",
                    {
                        "runId": run_id,
                        "application": application,
                        "reserved": plan.charge,
                        "datasets": [{"dataset": v["name"], "left": v["left"]} for v in views],
                    },
                )
        self.on_event(contract_id)
        if refusal is not None:
            raise refusal
        return {"runId": run_id, "reserved": plan.charge, "datasets": views}

    def record_privacy(self, contract_id: str, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Take a run's accounting only if governance's own recomputation agrees with it.

        Epsilon is recomputed outside the write lock (opacus takes tens of milliseconds, its first
        import seconds); the reservation is looked up again under the lock before anything is
        written. A refused record is kept (ledger entry, event) and leaves the reservation charged."""
        claims = self._attested(contract_id, body.get("attestation"), purpose="secret")
        instance = privacy.instance_of(claims)
        if not _RUN_ID.match(run_id):
            raise InvalidInputError(f"run id {run_id!r} is not valid", hint="use the runId the reservation returned")
        fields = privacy.check_record(body)
        self._privacy().reservation_for(contract_id, run_id, instance)  # refuse before the slow part
        recomputed = privacy.recompute_epsilon(
            fields["accountant"], fields["noise_multiplier"], fields["sample_rate"], fields["steps"], fields["delta"]
        )
        with self._write():
            model = self._privacy()
            verdict = privacy.judge_record(model.reservation_for(contract_id, run_id, instance), fields, recomputed)
            record = fields | {
                "contract_id": contract_id,
                "run_id": run_id,
                "instance": instance,
                "status": verdict.status,
                "epsilon_recomputed": verdict.epsilon_recomputed,
                "epsilon_spent": verdict.epsilon_spent,
                "reason": verdict.reason,
                "attestation_sha256": ledger.payload_digest(str(body["attestation"]).encode()),
            }
            seqno = self._attested_privacy_write(contract_id, privacy.RECORD, record)
            model.apply(seqno, privacy.RECORD, f"{ledger.ATTESTED_PREFIX}{contract_id}", record)
            datasets = [model.budget(d).view(d) for d in model.reservations[run_id].datasets]
            event = {"runId": run_id, "epsilonRecomputed": recomputed, "epsilonSpent": verdict.epsilon_spent}
            if verdict.status == privacy.RECORDED:
                self._insert_event(contract_id, seqno, "privacy_recorded", "audit", event)
            else:
                self._insert_event(contract_id, seqno, "privacy_refused", "audit", event | {"reason": verdict.reason})
        self.on_event(contract_id)
        if verdict.status != privacy.RECORDED:
            raise ConflictError(
                f"privacy record of run {run_id[:12]}… refused: {verdict.reason}",
                hint="the run's whole reservation stays charged",
            )
        return {
            "runId": run_id,
            "status": verdict.status,
            "epsilonRecomputed": recomputed,
            "epsilonSpent": verdict.epsilon_spent,
            "datasets": datasets,
        }

    def _check_privacy_reservation(self, contract_id: str, asset: str, claims: dict[str, Any]) -> None:
        """The DEK of a budgeted datasource goes only to the instance holding an open reservation."""
        contract = self.get_contract(contract_id)
        if not any(item.name == asset for item in privacy.declared_budgets(contract["data"])):
            return
        if not self._privacy().open_reservation(contract_id, privacy.instance_of(claims)):
            raise AccessDeniedError(
                "no privacy reservation for this clean room: the runtime reserves epsilon before keys are released",
                hint=f"'{asset}' has a privacy budget; reserve with POST /contracts/{contract_id}/privacy/reservations",
            )

    def privacy_datasets(self) -> list[dict[str, Any]]:
        return self._privacy().datasets()

    def privacy_history(self, dataset: str | None = None) -> list[dict[str, Any]]:
        model = self._privacy()
        return model.history_of(model.resolve(dataset) if dataset else None)

    # -- ledger reads -------------------------------------------------------------------------------
    def head(self) -> dict[str, Any]:
        with self._lock:
            return {"seqno": self._head[0], "hash": self._head[1], "checkpointedSeqno": self._covered}

    def export(self) -> Iterator[str]:
        """The whole ledger as JSON lines (a checkpoint is signed first so every entry is covered)."""
        self.checkpoint()
        with self._lock:
            members = {
                r["member_id"]: r["cert_pem"] for r in self._db.execute("SELECT member_id, cert_pem FROM members")
            }
            entries = [
                dict(r) | {"request": bytes(r["request"])}
                for r in self._db.execute("SELECT * FROM ledger ORDER BY seqno")
            ]
            checkpoints = [
                dict(r) | {"signed": bytes(r["signed"])}
                for r in self._db.execute("SELECT * FROM checkpoints ORDER BY to_seqno")
            ]
        return ledger.export_lines(self.identity.cert_pem, members, entries, checkpoints)

    def receipt(self, seqno: int) -> dict[str, Any]:
        if not 1 <= seqno <= self._head[0]:
            raise NotFoundError(f"ledger entry {seqno} does not exist", hint=f"entries run from 1 to {self._head[0]}")
        if seqno > self._covered:
            self.checkpoint()
        with self._lock:
            cp = self._db.execute(
                "SELECT * FROM checkpoints WHERE from_seqno<=? AND to_seqno>=?", (seqno, seqno)
            ).fetchone()
            rows = self._db.execute(
                "SELECT * FROM ledger WHERE seqno BETWEEN ? AND ? ORDER BY seqno", (cp["from_seqno"], cp["to_seqno"])
            ).fetchall()
        entry_row = rows[seqno - cp["from_seqno"]]
        entry = {k: entry_row[k] for k in ("seqno", "prev", "digest", "signer", "kind", "hash")}
        return {
            "entry": entry,
            "request": ledger.b64(bytes(entry_row["request"])),
            "path": ledger.merkle_path([r["hash"] for r in rows], seqno - cp["from_seqno"]),
            "checkpoint": {
                "from_seqno": cp["from_seqno"],
                "to_seqno": cp["to_seqno"],
                "chain_head": cp["chain_head"],
                "merkle_root": cp["merkle_root"],
                "signed": ledger.b64(bytes(cp["signed"])),
            },
            "serviceCert": self.identity.cert_pem,
        }
