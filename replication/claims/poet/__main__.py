from replication.claims.base import main
from replication.claims.poet.spec import SPEC

main(SPEC)
