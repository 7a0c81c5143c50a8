"""Built-in embedders for memdock.

* ``minilm`` (`MiniLMEmbedder`): all-MiniLM-L6-v2 int8 ONNX, 384 dimensions, fully offline (the default).
* ``hash`` (`HashEmbedder`): deterministic feature hashing, for tests of plumbing only.
* ``openai`` (`OpenAIEmbedder`): any OpenAI-compatible ``/v1/embeddings`` endpoint over HTTP.

Importing this package is cheap: onnxruntime, tokenizers and the model load on the first ``embed`` call.
"""

from __future__ import annotations

from memdock.embedders.hashing import HashEmbedder
from memdock.embedders.minilm import MiniLMEmbedder
from memdock.embedders.openai import OpenAIEmbedder

__all__ = ["HashEmbedder", "MiniLMEmbedder", "OpenAIEmbedder"]
