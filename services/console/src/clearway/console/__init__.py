"""Clearway console: the support and partner web application (docs/console.md)."""
