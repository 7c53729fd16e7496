"""`pith`: the offline companion of `curl | jq` — hash, number, verify, keygen, sign-event, merge.

Exit status: 0 when everything holds, 1 when a verification fails (reason on stderr), 2 on
malformed input or usage. Other packages add subcommands (the service adds `serve`, `db`,
`import`) through the `pith.cli` entry-point group: a callable taking the subparsers object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import Any

from .canonical import canonical_sha256, parse_json
from .errors import PithError
from .events import EVENT_TYPES, build_event, sign_event, signer_info, verify_event
from .keyfile import load_key, save_key
from .keys import PUBLIC_REGISTRY_KEY_HEX, KeyPair, generate_signing_key, public_key_from_hex
from .merge import merge
from .number import pith_number
from .rotation import key_history, windowed_checks
from .timefmt import format_utc_second
from .verify import Check, canonical_record_of, document_kind, verify_document

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Malformed input or arguments: exit 2."""


def _read_json(source: str) -> Any:
    if source.startswith(("http://", "https://")):
        return _fetch_json(source)
    try:
        text = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {source}: {e.strerror}") from e
    try:
        return parse_json(text)
    except PithError as e:
        raise UsageError(f"{'stdin' if source == '-' else source}: {e}") from e


def _fetch_json(url: str) -> Any:
    """A document from a registry's URL. pith_core holds no network code: the fetch is a
    `pith.fetch` entry point (pith_client's, which follows every page of a bundle)."""
    fetchers = list(entry_points(group="pith.fetch"))
    if not fetchers:
        raise UsageError(f"cannot read {url}: no URL reader installed (pith_client)")
    try:
        text = fetchers[0].load()(url)
    except ValueError as e:  # the reader's errors say what failed
        raise UsageError(str(e)) from e
    try:
        return parse_json(text)
    except PithError as e:
        raise UsageError(f"{url}: {e}") from e


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _is_document(value: Any) -> bool:
    try:
        return document_kind(value) != "canonical_record"
    except PithError:
        return False


def cmd_hash(args: argparse.Namespace) -> int:
    value = _read_json(args.file)
    if _is_document(value):
        value = canonical_record_of(value)
    print(canonical_sha256(value))
    return EXIT_OK


def cmd_number(args: argparse.Namespace) -> int:
    value = _read_json(args.file)
    print(pith_number(canonical_record_of(value)))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    doc = _read_json(args.file)
    keys = [public_key_from_hex(k) for k in (args.key or [PUBLIC_REGISTRY_KEY_HEX])]
    windows = None
    if args.rotations:  # issue 15: the key history from the first --key, signed rotations
        held = _read_json(args.rotations)
        statements = held.get("rotations", []) if isinstance(held, dict) else held
        try:
            windows = key_history(keys[0], statements)
        except (AttributeError, TypeError, ValueError) as e:  # a list of non-objects, say
            raise UsageError(f"{args.rotations}: not a list of rotation statements: {e}") from e
        keys = list(dict.fromkeys([*keys, *(w.public_key for w in windows)]))
    kind, checks = verify_document(doc, keys)
    if windows is not None:
        try:
            problems = windowed_checks(doc, windows)
        except (AttributeError, TypeError, ValueError) as e:  # hostile dates or shapes
            problems = [f"not checkable against the key windows: {e}"]
        detail = "; ".join(problems) or f"all inside their key's window ({len(windows)} keys)"
        checks.append(Check("key rotation windows", not problems, detail))
    ok = all(c.passed for c in checks)
    if args.json:
        _emit(
            {
                "kind": kind,
                "ok": ok,
                "checks": [
                    {"name": c.name, "passed": c.passed, "detail": c.detail} for c in checks
                ],
            }
        )
    else:
        names = ", ".join(k.hex()[:16] + "…" for k in keys)
        print(f"{kind}: {'verified' if ok else 'NOT verified'} under {names}")
        for c in checks:
            print(f"  {'ok  ' if c.passed else 'FAIL'}  {c.name}: {c.detail}")
    for c in checks:
        if not c.passed:
            print(f"pith verify: {c.name}: {c.detail}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


def cmd_keygen(args: argparse.Namespace) -> int:
    pair = KeyPair(generate_signing_key(), args.key_id)
    try:
        save_key(args.out, pair)
    except FileExistsError as e:
        raise UsageError(f"{args.out} exists; a key file is never overwritten") from e
    print(
        json.dumps(
            {
                "key_id": pair.key_id,
                "public_key_hex": pair.public_key.hex(),
                "fingerprint": pair.fingerprint,
            }
        )
    )
    return EXIT_OK


def cmd_sign_event(args: argparse.Namespace) -> int:
    pair = load_key(args.key)
    payload = _read_json(args.payload)
    if not isinstance(payload, dict):
        raise UsageError("the payload must be a JSON object")
    created_at = args.created_at or format_utc_second(datetime.now(UTC))
    unsigned = build_event(
        target=args.target,
        subject=args.subject,
        created_at=created_at,
        seq=args.seq,
        prev=args.prev,
        signer=signer_info(pair, signer_id=args.signer_id, signer_type=args.signer_type),
        payload=payload,
    )
    event = sign_event(unsigned, pair)
    verify_event(event)  # refuse to print an event that others would reject
    _emit(event)
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    doc = _read_json(args.file)
    if isinstance(doc, dict) and isinstance(doc.get("events"), list):
        events = doc["events"]
    elif isinstance(doc, list):
        events = doc
    else:
        raise UsageError("expected a JSON array of events or a bundle with an `events` list")
    keys = [public_key_from_hex(k) for k in (args.registry_key or [PUBLIC_REGISTRY_KEY_HEX])]
    _emit(merge(events, keys, subject=args.subject))
    return EXIT_OK


def package_version() -> str:
    try:
        return version("pith")
    except PackageNotFoundError:  # a checkout run with PYTHONPATH=.
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="pith",
        description="Verify and build Pith records, receipts and signed events offline.",
        epilog="Exit status: 0 all holds, 1 a verification failed, 2 malformed input or usage. "
        "Results go to stdout, messages to stderr.",
    )
    ap.add_argument("--version", action="version", version=f"pith {package_version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "hash", help="canonical SHA-256 of a JSON value (or of its canonical_record)"
    )
    p.add_argument("file", nargs="?", default="-", help="JSON file, or - for stdin (default)")
    p.set_defaults(func=cmd_hash)

    p = sub.add_parser("number", help="Pith number of a canonical record (or of a whole document)")
    p.add_argument("file", nargs="?", default="-", help="JSON file, or - for stdin (default)")
    p.set_defaults(func=cmd_number)

    p = sub.add_parser("verify", help="check a record, bundle or state: hash, number, receipt")
    p.add_argument(
        "file",
        nargs="?",
        default="-",
        help="record, bundle or state JSON: a file, - for stdin, or a registry URL (a bundle "
        "URL is fetched with every page, so its merged state is checked)",
    )
    p.add_argument(
        "--key",
        action="append",
        metavar="HEX",
        help="a trusted registry's raw Ed25519 public key in hex; repeat for several (an "
        "imported record's receipt is another registry's; default: the public registry's)",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument(
        "--rotations",
        metavar="FILE",
        help="key rotations (a registry's pith-signing-key.json, or a JSON list of signed "
        "statements) from the first --key on: later keys are trusted, each inside its window",
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("keygen", help="create an Ed25519 signing key file (mode 0600)")
    p.add_argument(
        "--out", required=True, type=Path, help="the key file to create (never overwritten)"
    )
    p.add_argument("--key-id", default="pith-key-1", help="the name the key signs under")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign-event", help="build and sign one event; prints it as JSON")
    p.add_argument("--key", required=True, type=Path, help="key file from `pith keygen`")
    p.add_argument("--subject", required=True, help="the Pith number the event is about")
    p.add_argument(
        "--target", required=True, choices=sorted(EVENT_TYPES), help="what the event is about"
    )
    p.add_argument("--payload", default="-", help="payload JSON file, or - for stdin")
    p.add_argument("--seq", type=int, default=1, help="this signer's sequence number (from 1)")
    p.add_argument("--prev", default=None, help="event_id of this signer's previous event")
    p.add_argument("--created-at", default=None, help="YYYY-MM-DDTHH:MM:SSZ (default: now)")
    p.add_argument("--signer-id", default="anonymous", help="who signs, as shown (anonymous)")
    p.add_argument(
        "--signer-type", default="individual", help="kind of signer, e.g. author (individual)"
    )
    p.set_defaults(func=cmd_sign_event)

    p = sub.add_parser("merge", help="merge a JSON array of events (or a bundle) into the state")
    p.add_argument(
        "file", nargs="?", default="-", help="events array or bundle JSON, or - for stdin"
    )
    p.add_argument(
        "--registry-key",
        action="append",
        metavar="HEX",
        help="pinned registry key, raw Ed25519 in hex (repeatable; default: the public registry's)",
    )
    p.add_argument("--subject", default=None, help="the Pith number (default: the events' one)")
    p.set_defaults(func=cmd_merge)

    for ep in entry_points(group="pith.cli"):
        register: Callable[[Any], None] = ep.load()
        register(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, PithError) as e:
        print(f"pith {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
