"""What the audit API's routes answer, for the OpenAPI document only.

The routes answer the dictionaries of ``api``, ``jobs.job_json``,
``verification.Report.as_json`` and ``signing.Checkpoint.as_json`` as they are
(``response_model=None``); these models and their examples describe them
(docs/design.md §8, §10).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clearway.shared.http import page_of

_ACTOR = {"subject": "usr_4f1c9a2b", "client_id": "cli_7Yq2mNpR4sT", "delegation": []}
_RECORD = {
    "v": 1,
    "seq": 1041,
    "recorded_at": "2026-12-03T09:15:00.412000Z",
    "occurred_at": "2026-12-03T09:15:00.398000Z",
    "source_event_id": "evt_01JEX4Q7K2M9Q4XW8T5N3B6C1D",
    "type": "consent.authorised",
    "action": "consent.authorised",
    "resource": "cns_0f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "source": "clearway.consent",
    "outcome": "success",
    "actor": _ACTOR,
    "reason": None,
    "approver": None,
    "consent_id": "cns_0f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "correlation_id": "corr_5f0c8a1e2b7d4c3a9e6f1b2d3c4a5e6f",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "tenant": "tnt_acme",
    "position": 1041,
    "leaf_hash": "9f2c4e1a7b3d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8",
}
_CHECKPOINT = {
    "tree_size": 1042,
    "root_hash": "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
    "issued_at": "2026-12-03T09:16:00.000Z",
    "key_id": "audk_5c1e9a2f7b3d4e60",
    "signature": "mF0x9Jq2c1YkS3n7rV8bT4wQ6eZ5hL0aP2uD7gK9iX1oC3vB6nM8yR4tE5sW7qA2jH0fG9dU1lN3k"
    "Z6xC8vB5mQ==",
    "signed_note": "clearway.audit/v1\n1042\nOnvT4jYKPSnupDb8+35ExzXRF8QtHBg1QgtrmZQt1Ps=\n"
    "1796289360000\n",
}
_REPORT = {
    "ok": True,
    "first_position": 0,
    "hashed_from": 1024,
    "tree_size": 1042,
    "records_checked": 18,
    "checkpoints_checked": 7,
    "cuts_checked": 0,
    "latest_checkpoint": 1042,
    "verified_size": 1042,
    "unanchored_records": 0,
    "failure": None,
    "notes": [],
}


class AuditRecord(BaseModel):
    """One record of the log: its leaf document (the bytes hashed are its RFC 8785
    serialisation without ``position`` and ``leaf_hash``), its position and leaf hash."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RECORD]})

    v: int = Field(description="Version of the leaf document.")
    seq: int = Field(description="The record's position in the log.")
    recorded_at: str = Field(description="When the log took it (RFC 3339, UTC).")
    occurred_at: str = Field(description="When it happened (RFC 3339, UTC).")
    source_event_id: str
    type: str = Field(description="The event type it records.")
    action: str
    resource: str
    source: str
    outcome: str = Field(description="`success` or `failure`.")
    actor: dict[str, Any] | None = Field(
        description="Who did it (`subject`, `client_id`, `delegation`)."
    )
    reason: str | None
    approver: str | None
    consent_id: str | None
    correlation_id: str | None
    trace_id: str | None
    tenant: str | None
    position: int
    leaf_hash: str = Field(description="RFC 9162 leaf hash, hex.")


AuditRecordList = page_of(AuditRecord, "AuditRecordList")


class Checkpoint(BaseModel):
    """A signed tree head of the log (a C2SP tlog-checkpoint-shaped note)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_CHECKPOINT]})

    tree_size: int
    root_hash: str = Field(description="RFC 9162 Merkle tree hash, hex.")
    issued_at: str = Field(description="RFC 3339, UTC, millisecond precision.")
    key_id: str = Field(description="The signing key, in `GET /v1/audit/keys`.")
    signature: str = Field(description="Base64 signature over `signed_note`.")
    signed_note: str = Field(description="The exact text signed.")


class VerificationFailure(BaseModel):
    position: int
    kind: str = Field(description="e.g. `root-mismatch`, `bad-signature`, `missing`.")
    detail: str


class VerificationReport(BaseModel):
    """What a verification run found; the first failure, in position order, if any."""

    model_config = ConfigDict(json_schema_extra={"examples": [_REPORT]})

    ok: bool
    first_position: int
    hashed_from: int = Field(description="Records below were verified by an earlier run.")
    tree_size: int
    records_checked: int
    checkpoints_checked: int
    cuts_checked: int
    latest_checkpoint: int | None
    verified_size: int | None
    unanchored_records: int = Field(description="Records not yet covered by a checkpoint.")
    failure: VerificationFailure | None
    notes: list[str]


class VerificationProgress(BaseModel):
    records_checked: int
    records_total: int | None = Field(description="Null until the run has counted them.")
    fraction: float


class VerificationJob(BaseModel):
    """A verification job: its state, progress and, once finished, its report."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "vrf_3f9a1c7e5b2d8f4a6c0e1b3d",
                    "state": "done",
                    "full": False,
                    "created_at": "2026-12-03T09:20:00.105322+00:00",
                    "finished_at": "2026-12-03T09:20:01.884017+00:00",
                    "progress": {"records_checked": 18, "records_total": 18, "fraction": 1.0},
                    "ok": True,
                    "result": _REPORT,
                }
            ]
        }
    )

    id: str
    state: str = Field(description="`queued`, `running`, `done` or `error`.")
    full: bool
    created_at: str
    finished_at: str | None
    progress: VerificationProgress
    ok: bool | None = Field(description="Whether the log verified; null until done.")
    result: dict[str, Any] | None = Field(
        description='Once finished: the report (`VerificationReport`), or `{"error": …}`'
        " when the run could not complete."
    )


class InclusionProof(BaseModel):
    """RFC 9162 §2.1.3 inclusion proof of a record against a signed checkpoint."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "position": 1041,
                    "tree_size": 1042,
                    "leaf": '{"action":"consent.authorised",…}',
                    "leaf_hash": _RECORD["leaf_hash"],
                    "audit_path": [
                        "5d2f8e1c4a7b9036d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6071829304a5b6c7d8"
                    ],
                    "checkpoint": _CHECKPOINT,
                }
            ]
        }
    )

    position: int
    tree_size: int
    leaf: str = Field(description="The exact leaf bytes hashed (UTF-8).")
    leaf_hash: str
    audit_path: list[str] = Field(description="Hex hashes, leaf to root.")
    checkpoint: Checkpoint


class ConsistencyProof(BaseModel):
    """RFC 9162 §2.1.4 consistency proof between two signed checkpoints."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "first": {**_CHECKPOINT, "tree_size": 1024},
                    "second": _CHECKPOINT,
                    "consistency_path": [
                        "8c1e4f7a2b5d9036e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8"
                    ],
                }
            ]
        }
    )

    first: Checkpoint
    second: Checkpoint
    consistency_path: list[str] = Field(description="Hex hashes.")


class CheckpointKey(BaseModel):
    """A public checkpoint key: an RFC 8037 OKP or RFC 7518 EC JWK."""

    kty: str
    crv: str
    x: str
    y: str | None = Field(None, description="EC keys only.")
    kid: str
    use: str
    alg: str = Field(description="`Ed25519`, or `ES256` (ECDSA P-256 over SHA-256).")
    active: bool = Field(description="Whether it signs new checkpoints.")


class CheckpointKeys(BaseModel):
    """The keys checkpoints are signed with, as a JWK Set (RFC 7517 §5)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "keys": [
                        {
                            "kty": "OKP",
                            "crv": "Ed25519",
                            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                            "kid": "audk_5c1e9a2f7b3d4e60",
                            "use": "sig",
                            "alg": "Ed25519",
                            "active": True,
                        }
                    ]
                }
            ]
        }
    )

    keys: list[CheckpointKey]
