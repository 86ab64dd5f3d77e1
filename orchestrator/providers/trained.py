"""The ``trained`` provider: classical baselines fitted on the dev split (:mod:`orchestrator.trained`).

``model`` names the kind (``tfidf-logreg``, ``knn-files``, ``lead-k``); ``options`` set its parameters and,
with ``train = "FILE"``, a training file. It reads the issue's fields, never the rendered prompt, so every
prompt variant of a task gets the same answer. Free: cost 0; latency is the prediction's, measured by the
client like any model's.
"""

from __future__ import annotations

from typing import Any

from .. import errors as E
from ..types import Issue, Usage
from .base import Adapter, ChatRequest, ProviderResponse


class TrainedAdapter(Adapter):
    name = "trained"

    def supports_schema(self, spec: Any) -> bool:
        return True  # a label model answers only its labels

    def cannot_answer(self, spec: Any, mode: Any) -> str | None:
        from ..trained.fitting import cannot_answer

        return cannot_answer(spec, mode)

    def prepare(
        self, config: Any, specs: Any, modes: Any, issues: Any, training: Any, *, progress: bool = True
    ) -> None:
        from ..trained.fitting import train_for_run

        train_for_run(config, [s.id for s in specs], modes, issues, training, progress=progress)

    async def send(self, req: ChatRequest, pool: Any) -> ProviderResponse:
        from ..errors import ConfigError
        from ..modes import get_mode
        from ..trained.fitting import fitted_for
        from ..trained.store import PlainDataError

        if not req.mode:
            raise self.err(E.BadRequestError, "a trained model answers a task, not free text", req)
        mode = get_mode(req.mode)
        reason = self.cannot_answer(req.spec, mode)
        if reason:
            raise self.err(E.BadRequestError, reason, req)
        if req.config is None:
            raise self.err(E.BadRequestError, "a trained model needs the config (its home)", req)
        issue = req.issue or Issue(title="(untitled)", body="\n".join(m.content for m in req.chat))
        try:
            out = fitted_for(req.config, req.spec, mode).answer(issue)
        except (ConfigError, PlainDataError) as exc:
            raise self.err(E.BadRequestError, str(exc), req) from None
        usage = Usage(input_uncached=len((issue.title + " " + issue.body).split()), output=len(out.split()))
        return ProviderResponse(
            text=out, usage=usage, served_model=f"trained-{req.spec.model}", finish_reason="stop"
        )


ADAPTER = TrainedAdapter()
