"""The byte-stream partition: every unit (row) in exactly one chunk, windows equal within a row."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.chunkft.chunks import StreamTensor, chunk_bytes, partition

tensors_st = st.lists(
    st.builds(
        StreamTensor,
        units=st.integers(1, 300),
        unit_elems=st.integers(1, 64),
        elem_bytes=st.sampled_from([6, 10, 12]),  # bf16/fp16/fp32 parameter + 8 B of AdamW state
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(tensors=tensors_st, chunks=st.integers(1, 40))
def test_every_unit_once_and_windows_equal_within_one_unit(tensors, chunks):
    total = sum(t.nbytes for t in tensors)
    try:
        plan = partition(tensors, chunks)
    except ValueError as exc:
        assert "empty" in str(exc)
        # refused only when some window really has to be empty: a unit outweighs a window
        assert max(t.unit_bytes for t in tensors) * chunks > total or chunks > sum(
            t.units for t in tensors
        )
        return
    assert len(plan) == chunks
    seen = [[0] * t.units for t in tensors]
    order = []
    for pieces in plan:
        assert pieces, "no window is empty"
        for p in pieces:
            assert 0 <= p.start < p.end <= tensors[p.tensor].units
            for u in range(p.start, p.end):
                seen[p.tensor][u] += 1
            order.append((p.tensor, p.start, p.end))
    assert all(c == 1 for row in seen for c in row)  # exactly one chunk per unit
    assert order == sorted(order)  # chunks follow the stream: contiguous windows
    biggest = max(t.unit_bytes for t in tensors)
    for pieces in plan:
        assert abs(chunk_bytes(tensors, pieces) * chunks - total) <= biggest * chunks


def test_cut_lands_inside_a_tensor_on_the_nearest_row():
    # one tensor of 10 rows of 10 B and one of 30 rows of 10 B: 400 B in 4 windows of 100 B
    tensors = [StreamTensor(10, 1, 10), StreamTensor(30, 5, 2)]
    plan = partition(tensors, 4)
    assert [[(p.tensor, p.start, p.end) for p in ps] for ps in plan] == [
        [(0, 0, 10)],
        [(1, 0, 10)],
        [(1, 10, 20)],
        [(1, 20, 30)],
    ]


def test_refuses_more_chunks_than_rows_and_bad_input():
    with pytest.raises(ValueError, match="fewer chunks"):
        partition([StreamTensor(3, 4, 10)], 4)
    with pytest.raises(ValueError, match="at least 1"):
        partition([StreamTensor(3, 4, 10)], 0)
    with pytest.raises(ValueError, match="no trainable"):
        partition([], 2)
