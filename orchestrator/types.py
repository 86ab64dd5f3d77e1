"""Typed values that cross module boundaries: messages, usage, completions, issues.

Everything here is a pydantic v2 model and round-trips through JSON.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

Role = Literal["system", "user", "assistant"]
IssueType = Literal["bug", "feature", "question", "docs"]
Severity = Literal["low", "medium", "high", "critical"]
ISSUE_TYPES: tuple[str, ...] = ("bug", "feature", "question", "docs")
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


class Usage(BaseModel):
    """Token usage on disjoint axes, so that no token is priced twice.

    ``input_uncached + cache_read + cache_write`` is every input token;
    ``output`` excludes ``reasoning`` (both are billed as output).
    ``raw`` is the provider's usage object exactly as returned.
    """

    input_uncached: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0
    raw: dict[str, Any] | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def input_total(self) -> int:
        return self.input_uncached + self.cache_read + self.cache_write

    @computed_field  # type: ignore[prop-decorator]
    @property
    def output_total(self) -> int:
        return self.output + self.reasoning

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_uncached=self.input_uncached + other.input_uncached,
            cache_read=self.cache_read + other.cache_read,
            cache_write=self.cache_write + other.cache_write,
            output=self.output + other.output,
            reasoning=self.reasoning + other.reasoning,
        )


class Completion(BaseModel):
    """A normalized answer from any provider."""

    text: str
    model: str = Field(description="the model id asked for, e.g. local/smollm2")
    served_model: str | None = Field(default=None, description="what actually answered, as reported")
    provider: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = Field(default=None, description="spent; None when the price is unknown")
    cost_saved_usd: float | None = Field(default=None, description="list cost a cache hit saved")
    latency_s: float = 0.0
    ttft_s: float | None = Field(
        default=None, description="seconds from sending the answering request to its first token (streamed)"
    )
    output_tps: float | None = Field(
        default=None,
        description="output tokens per second from the first token to the last (streamed; None otherwise)",
    )
    finish_reason: str | None = None
    attempts: int = 1
    from_cache: bool = False
    request_id: str | None = None
    mode: str | None = None
    parsed: dict[str, Any] | None = None
    parse_error: str | None = None
    fallback_path: list[str] = Field(default_factory=list)
    fallback_reasons: list[str] = Field(
        default_factory=list,
        description="why each model before the answering one did not answer, one line each "
        "('openai/gpt-4.1-mini: auth: OPENAI_API_KEY is not set'), redacted",
    )
    request_hash: str | None = None
    provider_cost_usd: float | None = Field(default=None, description="cost the provider itself reported")
    charged_usd: float | None = Field(
        default=None,
        description="what the budget counted for this call: the cost when known, else the worst case "
        "reserved for it, plus the worst case of failed attempts that may have been billed",
    )
    notes: list[str] = Field(
        default_factory=list,
        description="what the client noticed and repaired: usage_missing, text_repaired, secret_redacted; "
        "coalesced (the answer of an identical request that was in flight, shared as a cache hit)",
    )
    raw: dict[str, Any] | None = Field(default=None, repr=False, description="the raw response body")


class Comment(BaseModel):
    author: str | None = None
    body: str = ""
    created_at: str | None = None


class Gold(BaseModel):
    """Reference labels for an issue; every field optional so partial sets load."""

    model_config = ConfigDict(extra="allow")

    type: IssueType | None = None
    component: str | None = None
    severity: Severity | None = None
    files: list[str] = Field(default_factory=list)
    summary: str | None = None
    key_points: list[str] = Field(default_factory=list)

    def value_of(self, name: str) -> Any:
        """The gold field ``name``: a declared one (``type``, ``files``...) or an extra one (``priority``)."""
        if name in type(self).model_fields:
            return getattr(self, name)
        return (self.model_extra or {}).get(name)


class Issue(BaseModel):
    """A GitHub issue with optional gold labels."""

    id: str = ""
    repo: str = ""
    number: int | None = None
    title: str
    body: str = ""
    labels: list[str] = Field(default_factory=list)
    comments: list[Comment] = Field(default_factory=list)
    state: str | None = None
    created_at: str | None = None
    closed_at: str | None = None
    url: str | None = None
    gold: Gold = Field(default_factory=Gold)
    split: Literal["dev", "test"] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        if not self.id and self.repo and self.number is not None:
            self.id = f"{self.repo}#{self.number}"
