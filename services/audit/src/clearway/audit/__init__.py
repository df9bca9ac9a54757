"""Clearway audit service: hash-chained, signed, searchable audit trail."""
