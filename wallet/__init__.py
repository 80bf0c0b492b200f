"""Trellis wallets: encrypted keys, DIDs, W3C Verifiable Credentials 2.0 with Data Integrity proofs."""
