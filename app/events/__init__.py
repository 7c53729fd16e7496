"""Events: taking signed events, the append-only log, merged states, bundles, the changes feed."""
