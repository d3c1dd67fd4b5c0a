"""transformers' own encoder of any supported family (``AutoModel``), behind the interface of our
:class:`reranker.models.bert.BertEncoder` (``(ids, mask) -> hidden states``): what an imported
ColBERT / PyLate model of a ModernBERT or XLM-RoBERTa backbone encodes with."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from reranker.errors import ArtifactError


def hf_settings(hf_config: dict[str, Any]) -> Any:
    """A transformers config object from a ``config.json`` dict (its ``model_type`` picks the class)."""
    from transformers import AutoConfig

    settings = {k: v for k, v in hf_config.items() if k not in ("model_type", "transformers_version", "architectures")}
    return AutoConfig.for_model(hf_config["model_type"], **settings)


class HFEncoder(nn.Module):
    """``AutoModel`` of ``hf_config`` (eager attention: it exports to ONNX alike for every family)."""

    def __init__(self, hf_config: dict[str, Any]) -> None:
        super().__init__()
        from transformers import AutoModel

        self.model = AutoModel.from_config(hf_settings(hf_config), attn_implementation="eager")

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """(B, L) ids and mask -> (B, L, hidden) last hidden states."""
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state

    def load(self, model_dir: str) -> None:
        """The weights of a transformers directory (``model.safetensors``; no pickle)."""
        from transformers import AutoModel

        source = AutoModel.from_pretrained(model_dir, attn_implementation="eager", use_safetensors=True)
        missing, unexpected = self.model.load_state_dict(source.state_dict(), strict=False)
        if missing or unexpected:
            raise ArtifactError(f"{model_dir}: weights do not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
