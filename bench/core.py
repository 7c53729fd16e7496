"""Protocol throughput, side by side in one run: hashing, signing, raw verify, and merge.

    .venv/bin/python bench/core.py [--sizes 10000 100000] [--json bench/results/core.json]

Merge must verify every event's signature, so PyNaCl's raw verify rate is its floor; the target is
merge throughput >= 70% of the raw verify rate measured in the same run. Rates are per CPU second
of this process, the two interleaved, best of five rounds: a shared machine's other load moves
neither much.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey, VerifyKey
from rich.console import Console
from rich.table import Table

from pith_core import (
    PaperMetadata,
    build_event,
    canonical_record,
    canonical_sha256,
    merge,
    pith_number,
    sign_event,
    sign_receipt,
    signer_info,
)
from pith_core.events import EVENT_DOMAIN, event_digest
from pith_core.keys import KeyPair


def rate(n: int, fn: Callable[[], Any], repeat: int = 3) -> float:
    """Best-of-`repeat` items per CPU second of this process for `fn`, which processes `n`
    items (CPU time: other processes on a shared machine do not count against it)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return n / best


def records(n: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        canonical_record(
            PaperMetadata(
                arxiv_id=f"26{rng.randrange(1, 13):02d}.{i:05d}",
                version=rng.randrange(1, 4),
                title=f"Paper {i} on {rng.random()}",
                abstract="We study " * rng.randrange(20, 200),
                submitted_at="2026-05-01T00:00:00Z",
                primary_cat="cs.LG",
                cross_cats=("cs.AI", "stat.ML"),
                license="http://creativecommons.org/licenses/by/4.0/",
            )
        )
        for i in range(n)
    ]


def events(n: int, subject: str, rng: random.Random) -> list[dict[str, Any]]:
    """`n` signed events about one subject from n/50 signers, realistic payloads."""
    signers = [KeyPair(SigningKey(rng.randbytes(32)), f"k{i}") for i in range(max(1, n // 50))]
    out: list[dict[str, Any]] = []
    seqs = dict.fromkeys(range(len(signers)), 0)
    for i in range(n):
        s = i % len(signers)
        seqs[s] += 1
        key = signers[s]
        out.append(
            sign_event(
                build_event(
                    target=rng.choice(["author_attestation", "citation_signature", "replication"]),
                    subject=subject,
                    created_at=f"2026-07-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                    seq=seqs[s],
                    prev=None,
                    signer=signer_info(key, signer_id=f"signer-{s}", signer_type="individual"),
                    payload={
                        "claim_id": "forge",
                        "verdict": "replicated",
                        "figures": {"speedup": "1.42", "peak_mem_ratio": "0.47"},
                        "note": f"event {i}",
                    },
                ),
                key,
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--json", type=Path, default=Path("bench/results/core.json"))
    args = ap.parse_args()
    rng = random.Random(20261123)
    console = Console()

    recs = records(2000, rng)
    registry = KeyPair(SigningKey(rng.randbytes(32)), "bench-registry")
    now = datetime.now(UTC)
    rows: list[tuple[str, float, str]] = []
    rows.append(
        (
            "records hashed (canonical JSON + SHA-256)",
            rate(len(recs), lambda: [canonical_sha256(r) for r in recs]),
            "records/CPU-s",
        )
    )
    rows.append(
        (
            "receipts signed",
            rate(len(recs), lambda: [sign_receipt(r, registry, signed_at=now) for r in recs]),
            "receipts/CPU-s",
        )
    )

    subject = pith_number(recs[0])
    results: dict[str, Any] = {}
    for n in args.sizes:
        with console.status(f"signing {n} events"):
            evs = events(n, subject, rng)
        # raw PyNaCl verify over exactly the bytes merge verifies (keys parsed once, like merge)
        vks = {
            e["signer"]["public_key_b64"]: VerifyKey(
                base64.b64decode(e["signer"]["public_key_b64"])
            )
            for e in evs
        }
        triples = [
            (
                vks[e["signer"]["public_key_b64"]],
                EVENT_DOMAIN + event_digest(e),
                base64.b64decode(e["signature_b64"]),
            )
            for e in evs
        ]
        shuffled = list(evs)
        rng.shuffle(shuffled)
        # as every caller holds events: parsed from JSON (a bundle, a page, the store's rows),
        # so laid out in memory in the order given, not in the order this bench signed them
        shuffled = json.loads(json.dumps(shuffled))
        counts: list[int] = []

        def run_merge(shuffled: list[dict[str, Any]] = shuffled, counts: list = counts) -> None:
            # the state is checked and dropped at once: a previous round's state kept alive
            # would make every garbage collection of the next round walk it too
            counts.append(
                merge(shuffled, [registry.public_key], subject=subject)["valid_event_count"]
            )

        # interleaved, best of each: both see the same machine load
        rounds: list[tuple[float, float]] = []
        for _ in range(5):
            verify_once = rate(n, lambda t=triples: [vk.verify(m, s) for vk, m, s in t], 1)
            rounds.append((verify_once, rate(n, run_merge, 1)))
        verify_rate = max(v for v, _ in rounds)
        merge_rate = max(m for _, m in rounds)
        assert set(counts) == {n}, "every benchmark event must be valid"
        rows.append((f"signatures verified, raw PyNaCl ({n} events)", verify_rate, "sigs/CPU-s"))
        rows.append((f"merge ({n} events)", merge_rate, "events/CPU-s"))
        results[str(n)] = {
            "raw_verify_per_s": verify_rate,
            "merge_events_per_s": merge_rate,
            "merge_over_verify": merge_rate / verify_rate,
            "rounds": [{"raw_verify_per_s": v, "merge_events_per_s": m} for v, m in rounds],
            "target": 0.70,
            "met": merge_rate / verify_rate >= 0.70,
        }

    table = Table(
        title=f"pith_core throughput — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    table.add_column("what")
    table.add_column("rate", justify="right")
    table.add_column("unit")
    for what, r, unit in rows:
        table.add_row(what, f"{r:,.0f}", unit)
    for n, res in results.items():
        table.add_row(
            f"merge / raw verify ({n})",
            f"{res['merge_over_verify']:.1%}",
            f"target ≥ 70%: {'met' if res['met'] else 'NOT met'}",
        )
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "rows": rows,
                "merge": results,
                "python": platform.python_version(),
                "load_avg": [round(x, 2) for x in os.getloadavg()],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
