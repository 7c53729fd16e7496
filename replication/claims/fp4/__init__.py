"""The FP4 training claim (arXiv 2501.17116): `spec` (torch-free) and `measure` (the figures).
Run it as `python -m replication.claims.fp4 --profile smoke|full`."""
