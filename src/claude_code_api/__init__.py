"""Serve Claude Code as an OpenAI- and Anthropic-compatible model endpoint."""

__version__ = "0.1.0"
