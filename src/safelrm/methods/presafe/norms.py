"""Where the LoRA update moved the policy: ||B @ A|| x scale per layer and module, plotted.

For each adapted linear map the update is ``delta_W = scale * B @ A`` with ``scale = alpha / r``
(``alpha / sqrt(r)`` with rsLoRA). ``fro`` is its Frobenius norm; ``rms`` divides by
``sqrt(out x in)``, which makes modules of different shapes (MLP vs attention projections)
comparable. Read from the adapter folder alone; the base model is not loaded.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from safelrm.errors import SafelrmError
from safelrm.io import read_json, write_json

Metric = Literal["fro", "rms"]
_KEY = re.compile(r"layers\.(\d+)\.(?:[\w.]*\.)?(\w+)\.lora_([AB])(?:\.\w+)?\.weight$")


def _scale(config: dict[str, Any], module: str) -> float:
    r = (config.get("rank_pattern") or {}).get(module, config.get("r"))
    alpha = (config.get("alpha_pattern") or {}).get(module, config.get("lora_alpha"))
    if not r or alpha is None:
        raise SafelrmError("adapter_config.json: missing 'r' or 'lora_alpha'")
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def lora_norms(adapter_dir: str | Path) -> dict[str, Any]:
    """``{"layers": [...], "modules": [...], "fro": {module: [per layer]}, "rms": {...}}``."""
    import torch
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    weights = adapter_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights.is_file():
        raise SafelrmError(
            f"{adapter_dir}: not a LoRA adapter folder (needs adapter_config.json and "
            "adapter_model.safetensors)"
        )
    config = read_json(config_path)
    pairs: dict[tuple[int, str], dict[str, Any]] = {}
    for key, tensor in load_file(str(weights)).items():
        m = _KEY.search(key)
        if m:
            pairs.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = tensor
    if not pairs:
        raise SafelrmError(f"{weights}: no per-layer LoRA weights found")
    layers = sorted({layer for layer, _ in pairs})
    modules = sorted({mod for _, mod in pairs}, key=_module_order)
    fro: dict[str, list[float | None]] = {mod: [None] * len(layers) for mod in modules}
    rms: dict[str, list[float | None]] = {mod: [None] * len(layers) for mod in modules}
    for (layer, mod), ab in pairs.items():
        if "A" not in ab or "B" not in ab:
            continue
        delta = (ab["B"].float() @ ab["A"].float()) * _scale(config, mod)
        i = layers.index(layer)
        norm = float(torch.linalg.norm(delta))
        fro[mod][i], rms[mod][i] = norm, norm / math.sqrt(delta.numel())
    return {
        "adapter": str(adapter_dir),
        "layers": layers,
        "modules": modules,
        "fro": fro,
        "rms": rms,
    }


_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _module_order(name: str) -> tuple[int, str]:
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


def summarize_norms(norms: dict[str, Any], metric: Metric = "rms") -> dict[str, Any]:
    """Per module: mean over layers, and the deeper half's mean over the shallower half's."""
    table = norms[metric]
    half = len(norms["layers"]) // 2
    out: dict[str, Any] = {}
    for mod, values in table.items():
        vals = [v for v in values if v is not None]
        low = [v for v in values[:half] if v is not None]
        high = [v for v in values[half:] if v is not None]
        out[mod] = {
            "mean": sum(vals) / len(vals) if vals else None,
            "deep_over_shallow": (sum(high) / len(high)) / (sum(low) / len(low))
            if low and high and sum(low) > 0
            else None,
        }
    ranking = sorted((m for m in out if out[m]["mean"] is not None), key=lambda m: -out[m]["mean"])
    return {"metric": metric, "modules": out, "ranking": ranking}


def plot_norms(norms: dict[str, Any], out_dir: str | Path, metric: Metric = "rms") -> list[Path]:
    """``lora_norms_heatmap.png`` (layers x modules) and ``lora_norms_modules.png`` (bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    modules, layers = norms["modules"], norms["layers"]
    grid = np.array(  # layers x modules
        [[np.nan if v is None else v for v in norms[metric][m]] for m in modules], dtype=float
    ).T
    label = "||B@A||_F x scale" + (" / sqrt(out*in)" if metric == "rms" else "")

    fig, ax = plt.subplots(figsize=(1.2 * len(modules) + 2, 0.22 * len(layers) + 2))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", origin="lower")
    ax.set_xticks(range(len(modules)), modules, rotation=30, ha="right")
    step = max(1, len(layers) // 15)
    ax.set_yticks(range(0, len(layers), step), [str(x) for x in layers[::step]])
    ax.set_ylabel("layer")
    ax.set_title(f"LoRA update norm per layer and module ({metric})")
    fig.colorbar(im, ax=ax, label=label)
    heatmap = out_dir / "lora_norms_heatmap.png"
    fig.tight_layout()
    fig.savefig(heatmap, dpi=120)
    plt.close(fig)

    half = len(layers) // 2
    fig, ax = plt.subplots(figsize=(1.1 * len(modules) + 2, 4))
    x = np.arange(len(modules))
    shallow = [np.nanmean(grid[:half, j]) if half else np.nan for j in range(len(modules))]
    deep = [np.nanmean(grid[half:, j]) for j in range(len(modules))]
    ax.bar(x - 0.2, shallow, 0.4, label=f"layers {layers[0]}-{layers[max(half - 1, 0)]}")
    ax.bar(x + 0.2, deep, 0.4, label=f"layers {layers[half]}-{layers[-1]}")
    ax.set_xticks(x, modules, rotation=30, ha="right")
    ax.set_ylabel(f"mean {label}")
    ax.set_title("LoRA update norm per module: shallower vs deeper half")
    ax.legend()
    bars = out_dir / "lora_norms_modules.png"
    fig.tight_layout()
    fig.savefig(bars, dpi=120)
    plt.close(fig)
    return [heatmap, bars]


def write_norms(adapter_dir: str | Path, out_dir: str | Path, metric: Metric = "rms") -> dict:
    """Compute, summarise, plot; writes ``lora_norms.json`` and the PNGs into ``out_dir``."""
    norms = lora_norms(adapter_dir)
    summary = summarize_norms(norms, metric)
    plots = plot_norms(norms, out_dir, metric)
    result = {**norms, "summary": summary, "plots": [str(p) for p in plots]}
    write_json(Path(out_dir) / "lora_norms.json", result)
    return result
