"""Clearway consent service: OAuth 2.0 authorization server and explicit user consent."""
