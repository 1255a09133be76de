"""Generation backends and model loading (backends are imported when first used)."""

from safelrm.models.backend import list_backends
from safelrm.models.engine import Engine, GenerationRequest, Record, SamplingParams, make_engine
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
