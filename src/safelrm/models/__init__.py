"""Generation backends and model loading."""

from safelrm.models import hf as _hf  # noqa: F401  (registers the hf backend)
from safelrm.models import vllm as _vllm  # noqa: F401  (registers vllm; imports vllm lazily)
from safelrm.models.engine import (
    Engine,
    GenerationRequest,
    Record,
    SamplingParams,
    list_backends,
    make_engine,
)
from safelrm.models.loading import LoadedModel, load_model, load_tokenizer, resolve_model

__all__ = [
    "Engine",
    "GenerationRequest",
    "LoadedModel",
    "Record",
    "SamplingParams",
    "list_backends",
    "load_model",
    "load_tokenizer",
    "make_engine",
    "resolve_model",
]
