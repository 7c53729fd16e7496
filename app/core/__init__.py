"""What every domain package shares: problem responses, the request guard, the read cache."""
