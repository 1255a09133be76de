"""Load the model to train, and write the trained adapter / merged model / log atomically."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safelrm.errors import SafelrmError


def _dtype(name: str) -> Any:
    import torch

    if name == "auto":
        cuda = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda else torch.float32
    return getattr(torch, name)


def _load_options(settings: Any) -> dict[str, Any]:
    """``from_pretrained`` options from the training settings; 4-bit QLoRA needs CUDA."""
    import torch

    if settings is None:
        return {}
    options = settings.load_options()
    if settings.load_in_4bit:
        if not torch.cuda.is_available():
            raise SafelrmError("load_in_4bit: 4-bit QLoRA needs a CUDA GPU (none found)")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise SafelrmError("load_in_4bit: needs bitsandbytes (pip install 'safelrm[qlora]')")
        from transformers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=settings.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=settings.use_bnb_nested_quant,
            bnb_4bit_compute_dtype=_dtype(settings.dtype),
        )
    return options


def load_for_training(model: Any, tokenizer: Any, settings: Any = None) -> tuple[Any, Any]:
    """Accept a loaded model, or any spec ``safelrm.models.load_model`` takes (folder, name, GGUF).

    ``settings`` (SFT/DPO settings) give the loading options: dtype, revision, remote code,
    attention implementation, 4-bit. A PEFT model is merged first, so every run starts one fresh
    adapter on plain weights. Under a multi-process launch with CUDA, each process loads onto its
    own GPU (``cuda:LOCAL_RANK``), not all onto GPU 0.
    """
    from transformers import PreTrainedModel

    if isinstance(model, str | Path):
        from safelrm.models import load_model
        from safelrm.train.distributed import training_device

        dtype = _dtype(settings.dtype if settings is not None else "auto")
        options = _load_options(settings)
        loaded = load_model(str(model), dtype=dtype, device=training_device(), **options)
        model, tokenizer = loaded.model, tokenizer or loaded.tokenizer
    if _is_peft(model):
        model = model.merge_and_unload()
    if not isinstance(model, PreTrainedModel):
        raise SafelrmError(f"model: expected a transformers model, got {type(model).__name__}")
    if tokenizer is None:
        raise SafelrmError("tokenizer: required when a loaded model is passed")
    return model, tokenizer


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def publish_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Fill a temp folder beside ``final`` with ``write``, then swap it in (never half-written)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        write(tmp)
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def save_outputs(trained: Any, tokenizer: Any, out_dir: Path) -> tuple[Path | None, Path]:
    """Write ``out_dir/adapter`` (LoRA only) and ``out_dir/merged`` (plain transformers model)."""
    adapter_dir = None
    if _is_peft(trained):
        adapter_dir = publish_dir(out_dir / "adapter", trained.save_pretrained)
        trained = trained.merge_and_unload()
    trained.config.use_cache = True

    def write_merged(path: Path) -> None:
        trained.save_pretrained(path)
        tokenizer.save_pretrained(path)

    return adapter_dir, publish_dir(out_dir / "merged", write_merged)


def step_log(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-step training entries of a Trainer's ``state.log_history`` (summary dropped)."""
    return [dict(e) for e in log_history if "loss" in e and "train_runtime" not in e]
