"""A ledger node: the service around the application (mempool, blocks, events) and its HTTP API."""
