"""Memory-lean training layers for Llama-family models (Llama, Mistral, Qwen2, Qwen3).

Autograd keeps every intermediate of a decomposed op alive until the backward pass, and eager ops
make full-size temporaries. Three kinds of layers make far more than their gradients need:

- RMSNorm saves its input, the normalized input and the output; the backward needs only the
  input and the per-token ``rstd``, and recomputes the normalized input from them.
- The SwiGLU MLP saves ``gate``, ``silu(gate)`` and ``up``; the backward needs only ``gate`` and
  ``up``, and recomputes ``silu(gate)``.
- A PEFT LoRA linear computes ``result + lora_B(lora_A(x)) * scaling`` through three full-size
  temporaries. One in-place ``addmm_`` into the base layer's output (which no backward needs)
  makes none; fewer large temporaries also fragment the CPU heap less.

``use_lean_layers`` swaps the forward of those modules, on one model instance, for autograd
functions that save only what their backward needs (Liger-Kernel does the same with Triton
kernels on GPUs; these are plain torch ops, so they run on the CPU too). The norm and MLP compute
the same ops in the same order, so their outputs are bitwise the same; the LoRA sum and all
gradients agree to float rounding. Call it after PEFT has wrapped the model.

``use_lean_lm_head_tiles`` sets the vocabulary tile of TRL's fused LM head (log-probs without the
full logits) for CPU runs: TRL's 32,768-column tile makes every tile temporary 134 MB at 1,024
tokens, and a 4,096-column tile is both smaller and faster on CPU caches.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

# Modules whose forward is exactly `weight * (x * rsqrt(mean(x^2) + eps))` in fp32, and
# `down(act(gate(x)) * up(x))` with a SiLU activation.
RMSNORM_CLASSES = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"})
MLP_CLASSES = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP"})
CPU_LM_HEAD_TILE = 4096
# What the lean forwards read from each module. Another transformers/PEFT version that renames one
# of them keeps its own forward for that module (checked per module, not by version number).
_RMSNORM_ATTRS = ("weight", "variance_epsilon")
_MLP_ATTRS = ("gate_proj", "up_proj", "down_proj")
_LORA_ATTRS = (
    "active_adapters", "disable_adapters", "merged", "lora_variant", "lora_A", "lora_B",
    "lora_dropout", "scaling", "base_layer",
)  # fmt: skip
logger = logging.getLogger(__name__)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        xf = x.to(torch.float32)
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        return weight * (xf * rstd).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        x, weight, rstd = ctx.saved_tensors
        normed = x.to(torch.float32) * rstd
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_out * normed.to(x.dtype)).reshape(-1, x.shape[-1]).sum(0)
        grad_normed = (grad_out * weight).to(torch.float32)
        dot = (grad_normed * normed).mean(-1, keepdim=True)
        grad_x = (rstd * (grad_normed - normed * dot)).to(x.dtype)
        return grad_x, grad_weight, None


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, up = ctx.saved_tensors
        dtype = gate.dtype
        gate, up, grad_out = gate.float(), up.float(), grad_out.float()  # bf16 rounds too coarsely
        sig = torch.sigmoid(gate)
        grad_gate = grad_out * up * (sig * (1 + gate * (1 - sig)))
        return grad_gate.to(dtype), (grad_out * gate * sig).to(dtype)


def _rmsnorm_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    return _RMSNorm.apply(hidden_states, self.weight, self.variance_epsilon)


def _mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(_SwiGLU.apply(self.gate_proj(x), self.up_proj(x)))


def _lora_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    adapters = self.active_adapters
    name = adapters[0] if len(adapters) == 1 else None
    if (
        args
        or kwargs
        or name is None
        or self.disable_adapters
        or self.merged
        or name in self.lora_variant  # DoRA and the like
        or self.base_layer.weight.dtype != self.lora_B[name].weight.dtype
        or torch.is_autocast_enabled(x.device.type)
    ):
        return type(self).forward(self, x, *args, **kwargs)  # PEFT's own
    lora_a, lora_b = self.lora_A[name], self.lora_B[name]
    result = self.base_layer(x)
    a = lora_a(self.lora_dropout[name](x.to(lora_a.weight.dtype)))
    flat = result.view(-1, result.shape[-1])
    flat.addmm_(a.reshape(-1, a.shape[-1]), lora_b.weight.t(), alpha=self.scaling[name])
    return result


def use_lean_layers(model: Any) -> int:
    """Give the RMSNorm, SiLU-MLP and LoRA-linear modules of ``model`` lean forwards (idempotent).

    Returns how many modules now use them. Other architectures are left as they are (0).
    """
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # another PEFT layout: LoRA layers keep PEFT's forward
        LoraLinear = None  # noqa: N806

    def has(module: Any, attrs: tuple[str, ...]) -> bool:
        return all(hasattr(module, a) for a in attrs)

    patched = 0
    for module in model.modules():
        name = type(module).__name__
        if name in RMSNORM_CLASSES and has(module, _RMSNORM_ATTRS):
            module.forward = types.MethodType(_rmsnorm_forward, module)
        elif (
            name in MLP_CLASSES
            and has(module, _MLP_ATTRS)
            and getattr(getattr(module, "config", None), "hidden_act", None) == "silu"
        ):
            module.forward = types.MethodType(_mlp_forward, module)
        elif (
            LoraLinear is not None
            and type(module) is LoraLinear
            and has(module, _LORA_ATTRS)
            and isinstance(module.base_layer, torch.nn.Linear)
        ):
            module.forward = types.MethodType(_lora_forward, module)
        else:
            continue
        patched += 1
    return patched


def use_lean_lm_head_tiles() -> None:
    """On CPU, make TRL's fused LM head project through 4,096-column vocabulary tiles."""
    if torch.cuda.is_available():
        return  # TRL's own tile suits the Triton kernel
    import trl.trainer.utils as trl_utils

    if not isinstance(getattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", None), int):
        # A TRL without this private constant (older or newer than the lock): its own tiling.
        logger.info("TRL has no _CHUNKED_LOGPROB_CHUNK_SIZE: keeping its LM-head tiling")
        return
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = CPU_LM_HEAD_TILE


def build_lean(settings: Any, make: Callable[[], Any]) -> Any:
    """How the SFT, DPO and PreSafe builders make their trainer: the CPU LM-head tile first (DPO
    precomputes reference log-probs while it is built), then lean layers on the wrapped model
    (by default on CPU only; on CUDA Liger-Kernel does this job)."""
    use_lean_lm_head_tiles()
    trainer = make()
    if settings.use_lean_layers():
        use_lean_layers(trainer.model)
    return trainer
