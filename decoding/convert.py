"""GGUF → Hugging Face folder (safetensors), done once per model by `weights`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def convert_gguf(gguf: Path, out_dir: Path, *, add_bos: bool) -> None:
    """Dequantize `gguf` to bfloat16 safetensors plus its tokenizer in `out_dir`.

    `add_bos` makes the tokenizer itself prepend BOS (Gemma degenerates without it and
    its GGUF tokenizer does not add it), so every client of the folder gets it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.monotonic()
    print(f"converting {gguf.name} → {out_dir.name} (one time) ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    model.hf_quantizer = None  # dequantized: save_pretrained refuses otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if add_bos:
        _prepend_bos(out_dir, tokenizer.bos_token, tokenizer.bos_token_id)
    print(f"converted {gguf.name} in {time.monotonic() - start:.0f} s", flush=True)


def _prepend_bos(out_dir: Path, bos: str, bos_id: int) -> None:
    path = out_dir / "tokenizer.json"
    spec = json.loads(path.read_text())
    special = {"SpecialToken": {"id": bos, "type_id": 0}}
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [special, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [special, {"Sequence": {"id": "A", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }
    path.write_text(json.dumps(spec, ensure_ascii=False))
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["add_bos_token"] = True
    config_path.write_text(json.dumps(config, indent=2))
