"""ChunkFT (arXiv 2605.21177): full fine-tuning through a moving window of the model.

The trainable tensors are laid end to end as one byte stream (parameter + optimizer-state
bytes), cut into equal windows (`chunks.partition`); one window is trained at a time. Backward
forms the input gradient in full but the weight gradient only for the active slice
(`sliced_dw`, `embedding_dw`, or `sliced_dw_adamw_` with AdamW in the GEMM's epilogue), and the
optimizer state of the other windows waits in pinned host memory (`ChunkFT`, the drop-in).
"""

from .chunks import Piece, StreamTensor, partition
from .launch import (
    SlicedEmbeddingFunction,
    SlicedLinearFunction,
    adamw_slice_,
    embedding_dw,
    sliced_dw,
    sliced_dw_adamw_,
)
from .optim import ChunkFT, ChunkFTUnsupported, UnchunkedAdamW

__all__ = [
    "ChunkFT",
    "ChunkFTUnsupported",
    "Piece",
    "SlicedEmbeddingFunction",
    "SlicedLinearFunction",
    "StreamTensor",
    "UnchunkedAdamW",
    "adamw_slice_",
    "embedding_dw",
    "partition",
    "sliced_dw",
    "sliced_dw_adamw_",
]
