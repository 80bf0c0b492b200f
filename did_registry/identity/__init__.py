"""Identity formats: DIDs, DID documents, Multikey, did:key, JCS, Bitstring Status List, keys. No I/O."""
