"""The ChunkFT claim: `spec` (what is claimed and how it is judged, torch-free) and `measure`
(the figures). Run it as `python -m replication.claims.chunkft --profile smoke|full`."""
