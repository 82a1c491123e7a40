"""Routing keys and their encryption at rest: Fernet keys, the encrypted field, key rotation."""
