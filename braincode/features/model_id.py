"""Model ids of the form ``source:name[@pretrained]`` and their short aliases."""

from __future__ import annotations

from dataclasses import dataclass

from braincode.errors import ModelError

#: Short names accepted wherever a model id is.
ALIASES: dict[str, str] = {
    "minilm": "hf:sentence-transformers/all-MiniLM-L6-v2",
}

#: The ``@pretrained`` value that asks for randomly initialised (seeded) weights.
RANDOM = "random"


@dataclass(frozen=True)
class ModelId:
    """A parsed model id.

    Attributes
    ----------
    source : str
        Which library builds the model: ``"open_clip"``, ``"timm"`` or ``"hf"``.
    name : str
        The model (architecture) name within that library, or a local path for ``hf``.
    pretrained : str or None
        The weights: a tag, ``"random"`` for seeded random weights, or None for the library's default.
    """

    source: str
    name: str
    pretrained: str | None = None

    @property
    def is_random(self) -> bool:
        """Whether random (seeded) weights were asked for."""
        return self.pretrained == RANDOM

    def __str__(self) -> str:
        return f"{self.source}:{self.name}" + ("" if self.pretrained is None else f"@{self.pretrained}")


def parse_model_id(model_id: str) -> ModelId:
    """Split ``source:name[@pretrained]`` (or an alias such as ``"minilm"``) into its parts.

    Examples
    --------
    >>> parse_model_id("open_clip:ViT-B-16@laion2b_s34b_b88k")
    ModelId(source='open_clip', name='ViT-B-16', pretrained='laion2b_s34b_b88k')
    >>> str(parse_model_id("minilm"))
    'hf:sentence-transformers/all-MiniLM-L6-v2'
    """
    text = ALIASES.get(model_id.strip(), model_id.strip())
    source, sep, rest = text.partition(":")
    name, _, pretrained = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if not sep or not source or not name:
        raise ModelError(
            f"cannot read the model id {model_id!r}",
            expected="source:name[@pretrained], e.g. open_clip:ViT-B-32@openai, timm:vit_base_patch16_224, "
            f"hf:bert-base-uncased, or an alias ({', '.join(sorted(ALIASES))})",
            found=repr(model_id),
            fix="write the library, a colon and the model name",
        )
    return ModelId(source, name, pretrained or None)
