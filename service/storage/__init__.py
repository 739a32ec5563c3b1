"""Persistence adapters behind the core's ``Journal`` protocol."""
