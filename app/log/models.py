"""The tables of the transparency log (migration 0004): one leaf per event in log-index order,
every complete subtree hash (never rewritten: tiles are slices of them), witness cosignatures."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.models import Base


class LogLeaf(Base):
    __tablename__ = "tlog_leaves"

    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_log_index: Mapped[int] = mapped_column(ForeignKey("events.log_index"), unique=True)


class LogNode(Base):
    """The hash of the perfect subtree over leaves [idx·2^level, (idx+1)·2^level)."""

    __tablename__ = "tlog_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogCosignature(Base):
    """A configured witness's cosignature line on the checkpoint of `tree_size`."""

    __tablename__ = "tlog_cosignatures"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    witness_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    signature_line: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
