"""Clearway sandbox rail: a payment rail with charges keyed by reference and fault injection."""
