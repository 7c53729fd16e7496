from replication.claims.base import main
from replication.claims.selftest.spec import SPEC

main(SPEC)
