"""What makes a request sendable and an answer storable: lone surrogates repaired, secrets redacted.

Every configured credential (each model's ``api_key_env`` value, each credential header) is registered as
a secret when a client is built, whatever its shape; answers are cleaned before anyone sees them, and the
cleaning is noted on the completion (``text_repaired``, ``secret_redacted``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .. import errors as E
from ..safe_text import repair_text
from ..types import Message

if TYPE_CHECKING:
    from ..config import Config
    from ..types import Completion


def register_config_secrets(config: Config) -> None:
    """Every configured credential becomes a secret to redact, whatever its shape: the value of each
    model's ``api_key_env`` and of each header whose name says it is a credential."""
    for spec in config.models.values():
        if spec.api_key_env:
            E.register_secret(os.environ.get(spec.api_key_env))
        for name, value in spec.headers.items():
            if E.is_secret_header(name):
                E.register_secret(value)


def safe_messages(messages: list[Message]) -> list[Message]:
    """Messages whose text every provider can be sent: lone surrogates (from an issue file) replaced."""
    out = messages
    for i, m in enumerate(messages):
        text, n = repair_text(m.content)
        if n:
            if out is messages:
                out = list(messages)
            out[i] = Message(role=m.role, content=text)
    return out


def make_safe(completion: Completion) -> None:
    """Repair what cannot be stored and redact what must not be, in the text: in place, noted in
    ``notes`` (HTTP adapters do the same to the raw body as they read it)."""
    text, repaired = repair_text(completion.text)
    if E.contains_secret(text) or any(p.search(text) for p in E.SECRET_PATTERNS):
        text = E.redact(text)
        if "secret_redacted" not in completion.notes:
            completion.notes.append("secret_redacted")
    if repaired and "text_repaired" not in completion.notes:
        completion.notes.append("text_repaired")
    completion.text = text
