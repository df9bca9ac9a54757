"""Clearway webhook delivery: signed, retried, replayable, never silent."""
