from replication.claims.base import main
from replication.claims.chunkft.spec import SPEC

main(SPEC)
