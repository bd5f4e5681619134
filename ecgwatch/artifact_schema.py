"""The schema of ``model.json``: every key the runtime reads, with its type and range.

Validated at load (start-up and every hot reload), so a hand-edited or truncated file is refused with a
message naming the key, instead of an AttributeError or KeyError deep in the daemon (which exited on
``"weights": "x"``), or a NaN threshold that silently disables every alarm. Keys the runtime does not
read (metrics, history, training details) may hold anything.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, model_validator

FORMAT = "ecgwatch-model"
FORMAT_VERSION = 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)


class Weights(_Section):
    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Input(_Section):
    seq_len: int = Field(ge=2, le=100_000)
    zscore_ddof: Literal[0, 1]
    window: Literal["rr", "fixed"] = "rr"
    before_s: FiniteFloat = Field(0.25, gt=0, le=2)
    after_s: FiniteFloat = Field(0.45, gt=0, le=2)
    align_samples: int = Field(0, ge=0, le=50)


class Threshold(_Section):
    value: FiniteFloat


class Detection(_Section):
    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    features: list[str]
    threshold: FiniteFloat = Field(gt=0, lt=1)
    fibrillation_threshold: FiniteFloat = Field(gt=0, lt=1)


class ModelDocument(_Section):
    format: Literal["ecgwatch-model"]
    format_version: Literal[1]
    version: str = Field(min_length=1)
    architecture: str
    hyperparameters: dict[str, Any]
    weights: Weights
    input: Input | None = None
    # The score rule's shapes depend on the network's sizes: ScoreRule.from_metadata checks its contents.
    score: dict[str, Any] | None = None
    threshold: Threshold | None = None
    detection: Detection | None = None

    @model_validator(mode="after")
    def _scoring_sections(self) -> ModelDocument:
        """An ECG model must say how beats are prepared, scored and judged; an image model need not."""
        if self.architecture == "lstm-autoencoder":
            missing = [name for name in ("input", "score", "threshold") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"an lstm-autoencoder model needs the sections {missing}")
            assert self.input is not None
            declared = self.hyperparameters.get("seq_len", self.input.seq_len)
            if declared != self.input.seq_len:
                raise ValueError(f"hyperparameters.seq_len {declared} != input.seq_len {self.input.seq_len}")
        return self


def problems(document: Any) -> list[str]:
    """Every schema violation in ``document``, each as ``key.path: what is wrong``; empty when valid."""
    try:
        ModelDocument.model_validate(document)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in e['loc']) or 'model.json'}: {e['msg']}" for e in exc.errors()]
    return []
