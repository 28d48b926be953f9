"""Durable state: conversations (SQLite by default)."""
