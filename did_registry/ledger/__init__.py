"""The permissioned ledger: transactions, deterministic state, commitments, storage."""
