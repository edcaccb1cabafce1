"""What the archive says against what a store holds: per payment, then per day and currency.

Pure functions for `pipelines.reconcile`. Each store is reduced to
`Holding`s, one per payment it knows (`transforms.sinks.readback` reads
them, from the store and from a scratch warehouse the archive was backfilled
into), and `compare` lists how two sets of holdings differ:

- `missing`: the archive has the payment, the store does not;
- `extra`: the store has a payment the archive does not (only holdings the
  caller marks as in range: a store holds other days too);
- `amount`, `refunded`, `currency`, `day`: both have it, a value differs;
- `unsent`: a message ledger entry claimed but never marked sent (its
  outcome is unknown).

`held_back` leaves out of a message store's expected holdings the payments
too old for the backfill's message window that the ledger has no entry of:
they are counted, not differences.

`diff_table` sums both sides per (day, currency) into `DiffRow`s: store
minus archive, in payments, amount and amount refunded, each in the row's
currency, never summed across currencies. `Comparison` holds one store's
two sides and their differences (`compared` leaves out a guest's identity
effects, which the archive cannot know), and `render_report` prints them.
A holding carries ids, days, currencies and amounts only: nothing personal
reaches the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from transforms.domain.money import format_amount

MISSING = "missing"
EXTRA = "extra"
AMOUNT = "amount"
REFUNDED = "refunded"
CURRENCY = "currency"
DAY = "day"
UNSENT = "unsent"

#: Differing payment ids listed per store.
LISTED = 10
#: Stores of effects that need the payer's identity, which a guest gets from the
#: Identity API, not from the archive.
NEEDS_IDENTITY = frozenset({"supporter_table", "thank_you_email", "soft_opt_in"})


@dataclass(frozen=True)
class Holding:
    """One payment as one store knows it.

    `amount` and `refunded` are major units in `currency`; None where the
    store does not know it (a ledger entry has no amount; the supporter table
    knows no refunds). `in_range` tells a holding the store has that the
    archive lacks from one outside the reconciled range.
    """

    payment_id: str
    day: date
    currency: str
    amount: Decimal | None
    refunded: Decimal | None = None
    sent: bool = True
    in_range: bool = True


@dataclass(frozen=True)
class Difference:
    """How one payment differs in one store: `kind` and the two values, as text."""

    store: str
    payment_id: str
    kind: str
    archive: str
    found: str

    def describe(self) -> str:
        if self.kind == MISSING:
            return f"{self.payment_id}: missing (archive: {self.archive})"
        if self.kind == EXTRA:
            return f"{self.payment_id}: extra (store: {self.found})"
        if self.kind == UNSENT:
            return f"{self.payment_id}: claimed, never marked sent (outcome unknown)"
        return f"{self.payment_id}: {self.kind} {self.archive} in the archive, {self.found} here"


@dataclass(frozen=True)
class DiffRow:
    """One (day, currency) of one store: store minus archive."""

    day: date
    currency: str
    payments: int
    amount: Decimal | None
    refunded: Decimal | None


def _money(value: Decimal, currency: str) -> str:
    """With the currency's decimals ('5.00', '500'), or every digit when it has more."""
    shown = format_amount(value, currency)
    return shown if Decimal(shown) == value else format(value.normalize(), "f")


def _summary(holding: Holding) -> str:
    parts = [holding.day.isoformat(), holding.currency]
    if holding.amount is not None:
        parts.append(_money(holding.amount, holding.currency))
    return " ".join(parts)


def compare(
    store: str, archive: Mapping[str, Holding], found: Mapping[str, Holding]
) -> list[Difference]:
    """Every difference between the archive's and a store's holdings, by payment id.

    A holding found but not in the archive counts as `extra` only when it is
    `in_range`. A value the store does not know (None) is not compared.
    """
    differences = []
    for payment_id in sorted(set(archive) | set(found)):
        expected, held = archive.get(payment_id), found.get(payment_id)
        if held is None:
            assert expected is not None
            differences.append(Difference(store, payment_id, MISSING, _summary(expected), ""))
            continue
        if expected is None:
            if held.in_range:
                differences.append(Difference(store, payment_id, EXTRA, "", _summary(held)))
            continue
        if not held.sent:
            differences.append(Difference(store, payment_id, UNSENT, "", ""))
            continue
        for kind, in_archive, in_store in _values(expected, held):
            if in_archive != in_store:
                differences.append(Difference(store, payment_id, kind, in_archive, in_store))
    return differences


def _values(expected: Holding, held: Holding) -> list[tuple[str, str, str]]:
    """(kind, archive's value, store's value) of every value both sides know."""
    values = [
        (DAY, expected.day.isoformat(), held.day.isoformat()),
        (CURRENCY, expected.currency, held.currency),
    ]
    for kind, mine, theirs in (
        (AMOUNT, expected.amount, held.amount),
        (REFUNDED, expected.refunded, held.refunded),
    ):
        if mine is not None and theirs is not None:
            values.append((kind, _money(mine, expected.currency), _money(theirs, held.currency)))
    return values


def _sum(values: Iterable[Decimal | None]) -> Decimal | None:
    known = [v for v in values if v is not None]
    return sum(known, Decimal(0)) if known else None


def diff_table(archive: Mapping[str, Holding], found: Mapping[str, Holding]) -> list[DiffRow]:
    """Store minus archive per (day, currency), for every (day, currency) either side has.

    Holdings the store has outside the range are left out; an entry only
    claimed (`sent` False) does not count as held. Amounts are summed only
    where the store knows them.
    """
    held = {
        payment_id: holding
        for payment_id, holding in found.items()
        if holding.sent and (holding.in_range or payment_id in archive)
    }
    keys = {(h.day, h.currency) for h in (*archive.values(), *held.values())}
    rows = []
    for day, currency in sorted(keys):
        mine = [h for h in held.values() if (h.day, h.currency) == (day, currency)]
        theirs = [h for h in archive.values() if (h.day, h.currency) == (day, currency)]
        rows.append(
            DiffRow(
                day,
                currency,
                payments=len(mine) - len(theirs),
                amount=_difference(mine, theirs, "amount"),
                refunded=_difference(mine, theirs, "refunded"),
            )
        )
    return rows


def _difference(mine: list[Holding], theirs: list[Holding], field: str) -> Decimal | None:
    held = _sum(getattr(h, field) for h in mine)
    expected = _sum(getattr(h, field) for h in theirs)
    if held is None and expected is None:
        return None
    return (held or Decimal(0)) - (expected or Decimal(0))


def render_table(tables: Mapping[str, list[DiffRow]]) -> str:
    """The diff table: one line per (day, currency), `payments/amount/refunded` per store.

    A store shows only the values it knows (a ledger's cell is its payments
    alone); a (day, currency) a store has no payment of shows its zeros.
    """
    keys = sorted({(r.day, r.currency) for rows in tables.values() for r in rows})
    header = ["day", "currency", *tables]
    lines = [header]
    for day, currency in keys:
        cells = [day.isoformat(), currency]
        for rows in tables.values():
            row = next((r for r in rows if (r.day, r.currency) == (day, currency)), None)
            cells.append(_cell(row or _zeros(rows, day, currency)))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _zeros(rows: list[DiffRow], day: date, currency: str) -> DiffRow:
    """An all-zero row shaped like the store's other rows."""
    amount = next((Decimal(0) for r in rows if r.amount is not None), None)
    refunded = next((Decimal(0) for r in rows if r.refunded is not None), None)
    return DiffRow(day, currency, 0, amount, refunded)


def _cell(row: DiffRow) -> str:
    parts = [f"{row.payments:+d}" if row.payments else "0"]
    for value in (row.amount, row.refunded):
        if value is not None:
            parts.append(_signed(value, row.currency))
    return "/".join(parts)


def _signed(value: Decimal, currency: str) -> str:
    if not value:
        return "0"
    return ("+" if value > 0 else "") + _money(value, currency)


@dataclass(frozen=True)
class Comparison:
    """One store: the archive's holdings, the store's, and how they differ."""

    store: str
    archive: Mapping[str, Holding]
    found: Mapping[str, Holding]
    guests_left_out: int = 0
    held_back: int = 0
    differences: tuple[Difference, ...] = field(init=False)

    def __post_init__(self) -> None:
        found = compare(self.store, self.archive, self.found)
        object.__setattr__(self, "differences", tuple(found))


def compared(
    store: str, archive: Mapping[str, Holding], found: Mapping[str, Holding], guests: set[str]
) -> Comparison:
    """The comparison of one store, leaving out what the archive cannot know.

    For the stores in `NEEDS_IDENTITY`, a payment of a guest (`guests`: no
    identity in the archive) that the store holds and the archive does not
    expect is left out and counted: its identity came from the Identity API.
    """
    if store not in NEEDS_IDENTITY:
        return Comparison(store, archive, found)
    left_out = (guests - set(archive)) & set(found)
    kept = {p: h for p, h in found.items() if p not in left_out}
    return Comparison(store, archive, kept, len(left_out))


def held_back(
    archive: Mapping[str, Holding],
    found: Mapping[str, Holding],
    created: Mapping[str, datetime],
    not_before: datetime | None,
) -> tuple[dict[str, Holding], int]:
    """The messages the archive expects less those a backfill held back, and their count.

    A backfill sends no message of a payment created before `not_before`
    (its `--messages_max_age_hours` at its `--run_started_at`), so the
    ledger has no entry for it: that is no difference. A held-back payment
    the ledger does have (sent when it was paid) is still compared, and
    every payment created at or after `not_before` is expected as usual.
    """
    if not_before is None:
        return dict(archive), 0
    kept = {
        payment_id: holding
        for payment_id, holding in archive.items()
        if payment_id in found or created[payment_id] >= not_before
    }
    return kept, len(archive) - len(kept)


def render_report(
    comparisons: Sequence[Comparison], *, start: datetime | None, end: datetime | None
) -> str:
    """The report: the range, the diff table, then the first differing ids of each store.

    The first comparison is the warehouse's, whose archive side counts the
    paid payments of the range.
    """
    since = start.isoformat() if start is not None else "the archive's start"
    until = end.isoformat() if end is not None else "its end"
    lines = [
        f"archive: {len(comparisons[0].archive)} paid payments created from {since} to {until}",
        "store minus archive per day and currency (payments/amount/refunded):",
        render_table({c.store: diff_table(c.archive, c.found) for c in comparisons}),
    ]
    guests = sum(c.guests_left_out for c in comparisons)
    if guests:
        lines.append(
            f"not compared: {guests} supporter items and messages of guests (their identity "
            "came from the Identity API, not the archive)"
        )
    held = sum(c.held_back for c in comparisons)
    if held:
        lines.append(
            f"not compared: {held} messages held back as too old for the message window "
            "(outputs skipped: message_too_old), none in the ledger"
        )
    for comparison in comparisons:
        count = len(comparison.differences)
        if not count:
            continue
        lines.append(f"{comparison.store}: {count} difference{'' if count == 1 else 's'}")
        lines.extend(f"  {d.describe()}" for d in comparison.differences[:LISTED])
        if count > LISTED:
            lines.append(f"  ... and {count - LISTED} more")
    differing = [c.store for c in comparisons if c.differences]
    if differing:
        lines.append(f"differences in {', '.join(differing)}")
    else:
        lines.append("reconciled: every difference is zero")
    return "\n".join(lines)
