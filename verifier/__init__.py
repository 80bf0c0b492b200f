"""Trellis verifier: authenticate devices against on-chain DID documents (built in its own issue)."""
