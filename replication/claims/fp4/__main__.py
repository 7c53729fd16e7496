from replication.claims.base import main
from replication.claims.fp4.spec import SPEC

main(SPEC)
