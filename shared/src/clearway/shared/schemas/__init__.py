"""Schema registry as code: Avro event schemas, their JSON views and CI checks.

A producer looks its schema up with ``default_registry().get("transfer.settled", 1)``,
passes the payload through ``schema.validate(payload)`` (defaults filled in, or a
``SchemaValidationError`` naming the field) and sets ``ce_dataschema`` to
``schema.dataschema``. CI runs ``clearway-schemas check``.
"""

from clearway.shared.schemas.compat import Problem, Revision, check_compatible, previous_revisions
from clearway.shared.schemas.jsonschema_view import avro_to_json_schema
from clearway.shared.schemas.registry import (
    SCHEMAS_DIR_ENV,
    EventSchema,
    EventTypeInfo,
    SchemaError,
    SchemaLoadError,
    SchemaRegistry,
    SchemaValidationError,
    UnknownSchemaError,
    default_registry,
    default_schemas_dir,
)

__all__ = [
    "SCHEMAS_DIR_ENV",
    "EventSchema",
    "EventTypeInfo",
    "Problem",
    "Revision",
    "SchemaError",
    "SchemaLoadError",
    "SchemaRegistry",
    "SchemaValidationError",
    "UnknownSchemaError",
    "avro_to_json_schema",
    "check_compatible",
    "default_registry",
    "default_schemas_dir",
    "previous_revisions",
]
