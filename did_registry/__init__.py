"""Trellis DID registry: identity formats and the permissioned ledger that anchors them."""
