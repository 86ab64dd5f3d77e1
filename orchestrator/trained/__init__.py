"""Classical baselines trained on the dev split: the honest floor a model must beat.

One kind of model per task shape, each served by the ``trained`` provider
(:mod:`orchestrator.providers.trained`) under the id ``trained/<kind>``:

- ``tfidf-logreg`` (:mod:`.labels`): label tasks; TF-IDF word 1-2-grams, sublinear tf, logistic regression.
- ``knn-files`` (:mod:`.neighbours`): files tasks (fix); the files of the most similar past issues.
- ``lead-k`` (:mod:`.lead`): free-text tasks (summarize, explain); the body's first k sentences.

Models are fitted on the dev split of the dataset being run (or a training file named in the model's
``options.train``), never on a test issue, and kept under ``ORCHESTRATOR_HOME/trained`` as plain arrays
(:mod:`.store`), keyed by the training data and the parameters (:mod:`.fitting`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..modes import Mode

__all__ = ["KINDS", "Kind", "kind_of"]


@dataclass(frozen=True)
class Kind:
    """A kind of trained model: which tasks it answers, its parameters, and how it is fitted and loaded."""

    name: str
    module: str  # the module holding the model class
    cls: str
    answers: Callable[[Mode], bool]
    what: str  # the tasks it answers, for messages
    defaults: dict[str, Any]
    fitted: bool = True  # lead-k fits nothing

    def model_class(self) -> Any:
        import importlib

        return getattr(importlib.import_module(self.module), self.cls)


KINDS: dict[str, Kind] = {
    "tfidf-logreg": Kind(
        "tfidf-logreg",
        f"{__name__}.labels",
        "LabelModel",
        lambda m: m.scorer == "label",
        "label tasks (scorer 'label')",
        {"ngram_max": 2, "min_df": 1, "C": 1.0, "max_iter": 1000, "class_weight": None},
    ),
    "knn-files": Kind(
        "knn-files",
        f"{__name__}.neighbours",
        "FilesModel",
        lambda m: m.scorer == "files",
        "files tasks (scorer 'files', such as fix)",
        {"ngram_max": 2, "min_df": 1, "neighbours": 5, "files": 3},
    ),
    "lead-k": Kind(
        "lead-k",
        f"{__name__}.lead",
        "LeadModel",
        lambda m: m.scorer not in ("label", "files"),
        "free-text tasks (summarize, explain)",
        {"k": 3},
        fitted=False,
    ),
}
# options a trained model takes besides its kind's parameters
COMMON_OPTIONS = ("train", "folds")


def kind_of(model: str, model_id: str) -> Kind:
    """The kind a ``trained`` model's ``model = "..."`` names; ValueError lists the kinds."""
    try:
        return KINDS[model]
    except KeyError:
        raise ValueError(
            f"model {model_id!r}: trained model {model!r} is not a kind of trained baseline; "
            f"kinds: {', '.join(KINDS)}"
        ) from None
