"""The registry's identity: its signing key, its admin token, its key document and manifest."""
