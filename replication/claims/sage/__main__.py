from replication.claims.base import main
from replication.claims.sage.spec import SPEC

main(SPEC)
