"""Replication: GPU workers, the job queue and its leases, and the signed records jobs yield."""
