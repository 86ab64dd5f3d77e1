"""Cost and token accounting: a ledger by model and mode, and a budget that no honest server can cross.

Before each attempt the client reserves the worst case the attempt can cost
(:func:`~orchestrator.client.pricing.worst_case_cost`); an attempt whose worst case, added to what is spent and
what concurrent attempts have reserved, would cross the cap is not sent
(:class:`~orchestrator.errors.BudgetExceededError`). Afterwards the reservation is settled, atomically:

- answered with usage: replaced by the actual cost;
- answered without usage (a priced model): the whole reservation is counted as spent, and the call's
  cost stays unknown (``None``), never 0;
- failed in a way the provider may still bill (a timeout while reading, a garbled or oversized 200):
  the reservation is counted as spent;
- failed with an error status: released.

So ``spent_usd`` is an upper bound of what the providers billed, and it never passes the budget. Tokens
are counted on the disjoint usage axes of :class:`~orchestrator.types.Usage`, so a cached input token is
never counted (or priced) twice.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import BudgetExceededError
from ..types import Completion

log = logging.getLogger("orchestrator")


@dataclass
class LedgerLine:
    """Totals for one (model, mode): calls, hits and errors; billed tokens per axis; USD spent and saved."""

    calls: int = 0
    cache_hits: int = 0
    errors: int = 0
    input_uncached: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0
    spent_usd: float = 0.0
    saved_usd: float = 0.0
    unpriced_calls: int = 0
    unknown_cost_calls: int = 0  # priced calls answered without usage: charged their worst case
    possibly_billed_failures: int = 0  # failed attempts charged their worst case
    charged_worst_case_usd: float = 0.0  # the part of spent_usd that is a worst case, not a known cost

    def add(self, other: LedgerLine) -> LedgerLine:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def input_total(self) -> int:
        return self.input_uncached + self.cache_read + self.cache_write

    @property
    def output_total(self) -> int:
        return self.output + self.reasoning


@dataclass
class Ledger:
    """Tokens on every axis, money spent and saved, by (model, mode); optionally capped by a budget.

    Thread-safe. A cache hit counts as a call and a hit, adds what it saved, and adds no tokens or
    spend (nothing was billed). ``spent_usd`` counts known costs plus the worst case charged for calls
    whose cost is unknown; ``unpriced_calls`` says how many calls had no price at all (not counted).
    """

    budget_usd: float | None = None
    lines: dict[tuple[str, str], LedgerLine] = field(default_factory=dict)
    reserved_usd: float = 0.0
    refused_usd: float = (
        0.0  # the worst case of the last attempt the budget refused (what a lease must cover)
    )
    _spent: float = field(default=0.0, repr=False)
    _saved: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _warned: set[str] = field(default_factory=set, repr=False)
    _over_budget_logged: bool = field(default=False, repr=False)

    @property
    def spent_usd(self) -> float:
        return self._spent

    @property
    def saved_usd(self) -> float:
        return self._saved

    @property
    def remaining_usd(self) -> float | None:
        """What the budget still allows (reservations of calls in flight deducted), or None without a cap."""
        if self.budget_usd is None:
            return None
        return max(0.0, self.budget_usd - self._spent - self.reserved_usd)

    def line(self, model: str, mode: str | None) -> LedgerLine:
        key = (model, mode or "")
        line = self.lines.get(key)
        if line is None:
            line = self.lines[key] = LedgerLine()
        return line

    def reserve(self, model: str, estimate: float | None) -> float:
        """Check the budget before an attempt; reserve its worst case so concurrent attempts see it.

        Raises BudgetExceededError when the attempt could cross the cap; returns the amount reserved
        (0 without a budget or when the price is unknown: such calls cannot be counted).
        """
        if self.budget_usd is None or estimate is None:
            return 0.0
        with self._lock:
            if self._spent + self.reserved_usd + estimate > self.budget_usd:
                self.refused_usd = estimate
                raise BudgetExceededError(
                    f"budget ${self.budget_usd:.4f} would be exceeded: spent ${self._spent:.4f}, "
                    f"in flight ${self.reserved_usd:.4f}, this call up to ${estimate:.4f}",
                    model=model,
                )
            self.reserved_usd += estimate
        return estimate

    def extend(self, amount: float) -> None:
        """Raise the budget by ``amount`` (a worker's lease of a cluster's budget grew)."""
        with self._lock:
            self.budget_usd = (self.budget_usd or 0.0) + amount

    def shrink_to_committed(self) -> float:
        """Lower the budget to what is spent and reserved; returns the part given up (a lease handed back)."""
        with self._lock:
            if self.budget_usd is None:
                return 0.0
            unused = max(0.0, self.budget_usd - self._spent - self.reserved_usd)
            self.budget_usd -= unused
            return unused

    def release(self, amount: float) -> None:
        if amount:
            with self._lock:
                self.reserved_usd = max(0.0, self.reserved_usd - amount)

    def warn_unpriced(self, model: str) -> None:
        """Warn once per model (per ledger) that its price is unknown."""
        if model in self._warned:
            return
        with self._lock:
            if model in self._warned:
                return
            self._warned.add(model)
        warnings.warn(
            f"model {model!r} has no price in the config: its cost is unknown (None) and not counted "
            "against the budget",
            stacklevel=4,
        )

    def record(self, completion: Completion, reserved: float = 0.0) -> None:
        """Record an answer and settle its reservation in one step (concurrent reservations never see
        the reservation gone before the cost is in).

        A priced answer without usage (cost ``None``, ``completion.charged_usd`` set) is charged that
        worst case; an answer with no price at all adds nothing to spend and counts as unpriced.
        """
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - reserved)
            line = self.line(completion.model, completion.mode)
            line.calls += 1
            if completion.from_cache:
                line.cache_hits += 1
                saved = completion.cost_saved_usd or 0.0
                line.saved_usd += saved
                self._saved += saved
                return
            u = completion.usage
            line.input_uncached += u.input_uncached
            line.cache_read += u.cache_read
            line.cache_write += u.cache_write
            line.output += u.output
            line.reasoning += u.reasoning
            if completion.cost_usd is not None:
                line.spent_usd += completion.cost_usd
                self._spent += completion.cost_usd
            elif completion.charged_usd:
                line.unknown_cost_calls += 1
                line.charged_worst_case_usd += completion.charged_usd
                line.spent_usd += completion.charged_usd
                self._spent += completion.charged_usd
            else:
                line.unpriced_calls += 1
            over = self._note_over_budget()
        if over:  # a dishonest server billed above the worst case: no further call will be sent
            self._warn_over_budget()

    def charge_failed(self, model: str, mode: str | None, reserved: float, charged: float) -> None:
        """A failed attempt the provider may still bill: release its reservation and count its worst
        case ``charged`` as spent (the cost itself is unknown)."""
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - reserved)
            if not charged:
                return
            line = self.line(model, mode)
            line.possibly_billed_failures += 1
            line.charged_worst_case_usd += charged
            line.spent_usd += charged
            self._spent += charged
            over = self._note_over_budget()
        if over:
            self._warn_over_budget()

    def _note_over_budget(self) -> bool:
        over = self.budget_usd is not None and self._spent > self.budget_usd and not self._over_budget_logged
        if over:
            self._over_budget_logged = True
        return over

    def _warn_over_budget(self) -> None:
        log.warning(
            "spent $%.4f, above the budget of $%.4f (a provider billed more than the worst case): "
            "no further call will be sent",
            self._spent,
            self.budget_usd,
        )

    def record_error(self, model: str, mode: str | None) -> None:
        with self._lock:
            self.line(model, mode).errors += 1

    def totals(self) -> LedgerLine:
        """Everything, summed over models and modes."""
        with self._lock:
            total = LedgerLine()
            for line in self.lines.values():
                total.add(line)
            return total

    def by(self, axis: str = "model") -> dict[str, LedgerLine]:
        """Totals by ``"model"`` or by ``"mode"``."""
        if axis not in ("model", "mode"):
            raise ValueError("axis must be 'model' or 'mode'")
        index = 0 if axis == "model" else 1
        out: dict[str, LedgerLine] = {}
        with self._lock:
            for key, line in sorted(self.lines.items()):
                out.setdefault(key[index], LedgerLine()).add(line)
        return out

    def to_rows(self) -> list[dict[str, object]]:
        """One dict per (model, mode), for a DataFrame."""
        with self._lock:
            return [{"model": m, "mode": md, **vars(line)} for (m, md), line in sorted(self.lines.items())]


def reserve_attempt(
    ledgers: list[Ledger], model: str, worst_case: float | None, sent: int
) -> list[tuple[Ledger, float]]:
    """Reserve one attempt's worst case in every ledger, or raise BudgetExceededError holding nothing
    (``sent``: the requests already sent for the call, reported on the error)."""
    reserved: list[tuple[Ledger, float]] = []
    try:
        for lg in ledgers:
            reserved.append((lg, lg.reserve(model, worst_case)))
    except BudgetExceededError as exc:
        for lg, amount in reserved:
            lg.release(amount)
        exc.attempts = sent
        raise
    return reserved


def settle_failed_attempt(
    reserved: list[tuple[Ledger, float]], model: str, mode: str | None, worst_case: float | None, error: Any
) -> float:
    """A failed attempt: its worst case is charged if the provider may bill it (``error.maybe_billed``),
    else released. Returns what was charged."""
    charged = (worst_case or 0.0) if error.maybe_billed else 0.0
    for lg, amount in reserved:
        lg.charge_failed(model, mode, amount, charged)
    return charged
