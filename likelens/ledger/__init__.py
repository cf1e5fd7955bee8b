"""Evidence ledger: an append-only RFC 6962 Merkle log of decisions with signed checkpoints."""
