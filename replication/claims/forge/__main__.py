from replication.claims.base import main
from replication.claims.forge.spec import SPEC

main(SPEC)
