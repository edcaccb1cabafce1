"""Re-drive dead letters: read their input again and run it through decode, core and writers.

Selects letters from the warehouse's `dead_letters` table (`--step`,
`--reason`, `--ids`, `--since/--until`; resolved letters are left out),
gets each letter's input again (`transforms.domain.redrive` says how, per
kind of letter), and runs it on the FnApiRunner through the backfill's
`DecodeEvents`, `ProcessStripeEvents` and `WriteOutputs`, with the same sink
flags. Every writer upserts by natural key and every message goes through
the ledger, so a re-drive never duplicates a row or a message.

- Record letters (decode, classify, read): the kept `raw` text (DuckDB), or,
  for BigQuery's redacted letters, the record read again from its source
  (`<file>@<offset>` in the archive, local or S3; `kinesis:<stream>/<shard>/<seq>`
  while within the stream's retention). The archive (`--source`, `--start`,
  `--end` as for the backfill) is also read for every other event of the
  payment such a record belongs to, so a payment is never decided on one event.
- Payment letters (join_payment: charge_missing, payment_not_settled): every
  event of the letter's PaymentIntent in `--source` (within `--start/--end`).
- Writers' letters (write_*): as payment letters, of the PaymentIntent their
  refused record names; one that names only a charge (the supporter item
  `Stripe - <charge id>`) is first matched to its PaymentIntent by the
  charge's events in `--source` (one more read of the archive), and stays
  pending when the charge is not there.
- Senders' letters whose message was not sent (send_*: rejected,
  retries_exhausted, ledger_error) name their charge: re-driven as its
  payment, after the ledger claim a rejected or exhausted send left is
  released, by a conditional delete that only removes that very claim
  (still `sending`, same `claimedAt`); a claim that changed is kept, and the
  ledger then decides (sent: nothing to send; claimed again: outcome_unknown).
  Such a letter is resolved only if the ledger then holds `<kind>#<charge>`
  `sent`; otherwise it stays pending, counted (`sender_letters_not_sent`)
  and listed with why (its payment outside `--messages_max_age_hours`, a
  claim not marked sent, no such message built). A selection of senders'
  letters whose sender's flag is missing (`Sink.sends` names the kinds each
  sink sends), or with `--no_messages`, is refused before anything is
  claimed (exit 2): the run could not resolve them.
- Senders' outcome_unknown letters (the message may have gone) are listed and
  left pending unless the operator, having checked the target, says what
  they found with `--outcome_unknown` (and selects them by `--ids` or
  `--reason outcome_unknown`). `delivered`: the ledger claim the letter names
  (`; claim left: claimedAt=...`) is marked `sent` by a conditional update
  (only while it is still that claim) and the letter resolved; nothing is
  re-driven or sent. `not_delivered`: the claim is released as above and the
  payment re-driven, so the message goes once; the letter is resolved only
  if the ledger then holds it `sent`, as above (a sender not selected is
  refused; a payment outside `--messages_max_age_hours` leaves it pending).
  A claim that changed since the letter is kept and counted: `delivered`
  then leaves the letter pending; `not_delivered` re-drives the payment and
  the ledger decides. A letter written before letters named their claim is refused
  (pending): nothing tells which claim the operator checked.

Marks (`transforms.sinks.dead_letters`): selected letters are claimed with the
run id before the run; a letter that fails again is rewritten by the run and
pending again; after the run the letters still claimed get `redriven_at`. A
payment letter whose payment the re-read did not find stays pending.
`--dry_run` lists the letters and what they would become (for outcome_unknown
letters, whether the ledger still holds the claim each names), and writes nothing.

    python -m pipelines.redrive --warehouse out/warehouse.duckdb --reason invalid_event
    python -m pipelines.redrive --warehouse out/warehouse.duckdb --reason charge_missing \\
        --source s3://archive/stripe/ --start 2024-12-01 --end 2024-12-09 --dry_run
    python -m pipelines.redrive --warehouse bigquery:P.D --step classify \\
        --since 2024-12-01 --source s3://archive/stripe/ --stripe_mode live \\
        --contributions_store postgresql://... --emails_queue_url https://...fifo ...
    python -m pipelines.redrive --warehouse bigquery:P.D --ids 3f2a... --outcome_unknown \\
        not_delivered --source s3://archive/stripe/ --stripe_mode live \\
        --emails_queue_url https://...fifo --sent_messages_table contribution-messages-sent

Exit codes: 0 every selected letter resolved (or none selected), 1 some still
fail, could not be re-driven or their message still did not go, 2 usage
(also senders' letters the flags cannot send), 3 infrastructure (warehouse,
source or a sink unreachable; the claims are released).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipelines.history import start_run
from pipelines.launch import build_checked, parse_options, quiet_beam_logs, record_tool_run
from pipelines.options import (
    AwsOptions,
    BackfillOptions,
    CoreOptions,
    IdentityOptions,
    RedriveOptions,
    SinkOptions,
)
from schemas.records import DeadLetter
from transforms.domain.events import SourceRecord
from transforms.domain.redrive import (
    SEND_STEP_PREFIX,
    Delivery,
    Kind,
    charge_id_of_letter,
    charge_payment_intent,
    describe,
    kind_of,
    payment_intent_of,
    payment_intent_of_letter,
    sender_kind,
)
from transforms.infrastructure import InfrastructureError, dynamodb_client
from transforms.sinks.common import BIGQUERY_PREFIX
from transforms.sinks.contract import MESSAGE_TOO_OLD, MessageWindow, SinkConfig
from transforms.sinks.dead_letters import DescribeOutputs, Selection, letter_store
from transforms.sinks.ledger import (
    OUTCOME_UNKNOWN,
    SENDING,
    SENT,
    confirm_sent,
    ledger_item,
    left_claim,
    release_claim,
)
from transforms.sinks.registry import sender_of
from transforms.sinks.router import WriteOutputs
from transforms.sources.archive import ReadArchive
from transforms.sources.decode import DecodeEvents
from transforms.sources.redrive import payment_intents_of, reread_records

PROG = "python -m pipelines.redrive"
DRY_RUN = "--dry_run"
OPTION_CLASSES = (
    RedriveOptions,
    BackfillOptions,
    CoreOptions,
    IdentityOptions,
    SinkOptions,
    AwsOptions,
)

EXIT_DONE, EXIT_STILL_FAILING, EXIT_USAGE, EXIT_INFRASTRUCTURE = 0, 1, 2, 3


class _DryRunFlag:
    """`--dry_run` for `--help` only: Beam's TestOptions owns a `--dry_run` that takes a value,
    so the flag is taken out of the arguments before Beam sees them."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            DRY_RUN,
            action="store_true",
            help="List the selected letters and what they would become (rows, messages, "
            "new letters); write, mark and send nothing, and call no Identity API.",
        )


def build(
    pipeline: beam.Pipeline,
    options: PipelineOptions,
    *,
    records: Sequence[SourceRecord],
    payment_intents: frozenset[str],
    describe_to: str | None,
) -> None:
    """Re-read records and payments' events -> decode -> core -> writers (or a description)."""
    core = options.view_as(CoreOptions).process_stripe_events(
        resolve_identities=None
        if describe_to is not None
        else options.view_as(IdentityOptions).identity_resolver()
    )
    decoded = (
        pipeline | "CreateRecords" >> beam.Create(list(records)) | "DecodeEvents" >> DecodeEvents()
    )
    streams = [decoded.events]
    if payment_intents:
        archive = options.view_as(BackfillOptions).archive_arguments()
        read = pipeline | "ReadArchive" >> ReadArchive(**archive)
        # The range's own dead letters are the letters of the backfill that read it, not ours.
        streams.append(
            read.events | "KeepPaymentsToRedrive" >> beam.Filter(_of_payments, payment_intents)
        )
    events = tuple(streams) | "MergeEvents" >> beam.Flatten()
    outputs = events | "ProcessStripeEvents" >> core
    tables = outputs.by_record_type()
    tables[DeadLetter] = (
        outputs.dead_letters,
        decoded.dead_letters,
    ) | "CollectDeadLetters" >> beam.Flatten()
    if describe_to is not None:
        _ = tables | "DescribeOutputs" >> DescribeOutputs(describe_to)
    else:
        _ = tables | "WriteOutputs" >> WriteOutputs(options.view_as(SinkOptions).sink_config())


def _of_payments(event: Any, payment_intents: frozenset[str]) -> bool:
    return payment_intent_of(event) in payment_intents


def _payment_intents_of_charges(
    options: PipelineOptions, charges: frozenset[str]
) -> dict[str, str]:
    """{charge id: PaymentIntent id} for the `charges` whose events are in `--source`.

    One local read of the archive (`--source`, `--start`, `--end`), keeping
    only the pairs the charges' events name; a charge absent from it is absent here.
    """
    if not charges:
        return {}
    archive = options.view_as(BackfillOptions).archive_arguments()
    with tempfile.TemporaryDirectory(prefix="redrive-charges-") as folder:
        prefix = str(Path(folder) / "charges")
        pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
        _ = (
            (pipeline | "ReadArchive" >> ReadArchive(**archive)).events
            | "PairChargesWithIntents" >> beam.FlatMap(_charge_intent, charges)
            | "DistinctPairs" >> beam.Distinct()
            | "WritePairs" >> beam.io.WriteToText(prefix)
        )
        pipeline.run().wait_until_finish()
        lines = sorted(
            line for path in Path(folder).glob("charges*") for line in path.read_text().splitlines()
        )
    return dict(line.split("\t", 1) for line in lines)


#: A ledger claim a sender's letter names: (message kind, charge id, claimedAt).
LetterClaim = tuple[str, str, float]


def _letter_claim(letter: DeadLetter) -> LetterClaim | None:
    kind, charge = sender_kind(letter), charge_id_of_letter(letter)
    at = left_claim(letter.error)
    return None if kind is None or charge is None or at is None else (kind, charge, at)


def _on_claims(
    claims: Mapping[str, LetterClaim], act: Callable[[Any, LetterClaim], bool]
) -> set[str]:
    """The letter ids whose claim `act(client, claim)` acted on (True); the others changed."""
    if not claims:
        return set()
    client = dynamodb_client()
    try:
        return {letter_id for letter_id, claim in claims.items() if act(client, claim)}
    finally:
        client.close()


def _release_claims(claims: Mapping[str, LetterClaim], table: str) -> set[str]:
    """Releases each claim still as its letter left it; the ids of the letters released."""
    return _on_claims(claims, lambda client, claim: release_claim(client, table, *claim))


def _confirm_claims(claims: Mapping[str, LetterClaim], table: str, run_id: str) -> set[str]:
    """Marks each claim still as its letter left it `sent`; the ids of the letters confirmed."""
    return _on_claims(claims, lambda client, claim: confirm_sent(client, table, *claim, run_id))


#: The effect a sender's letter stands for: (message kind, charge id), ledger key `kind#charge`.
Effect = tuple[str, str]


def _letter_effect(letter: DeadLetter) -> Effect | None:
    kind, charge = sender_kind(letter), charge_id_of_letter(letter)
    return None if kind is None or charge is None else (kind, charge)


def _ledger_states(effects: Mapping[str, Effect], table: str) -> dict[str, str | None]:
    """{letter id: the state the ledger now holds its effect in (under any claim), or None}."""
    if not effects:
        return {}
    client = dynamodb_client()
    try:
        return {
            letter_id: item[0] if (item := ledger_item(client, table, *effect)) else None
            for letter_id, effect in effects.items()
        }
    finally:
        client.close()


def _senders_refusal(letters: Sequence[DeadLetter], config: SinkConfig) -> str | None:
    """Why this run cannot send the selected senders' letters' messages (one line), else None.

    Decided from the letters' steps and the flags alone, before anything is claimed: a
    letter is resolved only once its message is sent, so a run without its sender (or with
    `--no_messages`) could only re-drive its payment and leave it pending.
    """
    steps: dict[str, int] = {}
    for letter in letters:
        steps[letter.step] = steps.get(letter.step, 0) + 1
    problems = []
    for step, count in sorted(steps.items()):
        sink = sender_of(step[len(SEND_STEP_PREFIX) :])
        if sink is None:
            problem = "has no sink that sends it"
        elif not sink.is_selected(config):
            problem = f"needs {sink.flags[0].option}"
        elif sink.follows_message_window and not config.messages.send:
            problem = "is not sent under --no_messages"
        else:
            continue
        problems.append(f"{step} ({count} letter{'s' if count > 1 else ''}) {problem}")
    if not problems:
        return None
    return (
        "the selected senders' letters are resolved only once their message is sent, which "
        f"this run cannot do: {'; '.join(problems)}. Give the senders' flags (and "
        "--sent_messages_table), or leave those letters out with --step, --reason or --ids"
    )


def _unsent_reason(
    effect: Effect, state: str | None, settled: datetime | None, window: MessageWindow
) -> str:
    """Why a sender's letter's message is still not sent after its payment was re-driven."""
    kind = effect[0]
    sink = sender_of(kind)
    if state == SENDING:
        return (
            "the ledger holds a claim of it not marked sent (claimed again since the letter, "
            "or met by this run: its outcome_unknown letter is pending), see the runbook"
        )
    follows = sink is not None and sink.follows_message_window
    if settled is not None and follows and window.skip_reason(settled) == MESSAGE_TOO_OLD:
        return (
            f"outside the message window: its payment settled {settled:%Y-%m-%d %H:%M} UTC, "
            f"before {window.not_before:%Y-%m-%d %H:%M} UTC; give a --messages_max_age_hours "
            "that covers it"
        )
    return f"the re-driven payment built no {kind} message (nothing to send)"


def _still_claimed(claims: Mapping[str, LetterClaim], table: str, delivery: Delivery) -> set[str]:
    """Read only: the letter ids whose claim the ledger still holds as the letter left it
    (for `delivered`, also one already marked sent under it: confirmed again)."""
    states = {SENDING, SENT} if delivery is Delivery.DELIVERED else {SENDING}

    def held(client: Any, claim: LetterClaim) -> bool:
        item = ledger_item(client, table, claim[0], claim[1])
        return item is not None and item[0] in states and item[1] == claim[2]

    return _on_claims(claims, held)


def _charge_intent(event: Any, charges: frozenset[str]) -> list[str]:
    pair = charge_payment_intent(event)
    return [f"{pair[0]}\t{pair[1]}"] if pair is not None and pair[0] in charges else []


def run(argv: Sequence[str] | None = None) -> int:
    """Selects, re-drives and marks; prints what it did. Exit codes as in the module docstring."""
    args = list(sys.argv[1:] if argv is None else argv)
    dry_run = DRY_RUN in args
    args = [arg for arg in args if arg != DRY_RUN]
    options = parse_options(
        args,
        (*OPTION_CLASSES, cast(Any, _DryRunFlag)),
        prog=PROG,
        description=__doc__ or "",
    )
    quiet_beam_logs()
    runner = options.view_as(StandardOptions).runner
    if runner not in (None, "FnApiRunner"):
        return _usage(f"re-drives run locally on the FnApiRunner, not {runner}")
    warehouse = options.view_as(SinkOptions).warehouse
    start = start_run(
        "redrive", args, runner=runner, source=options.view_as(BackfillOptions).source
    )

    def recorded(
        code: int,
        selected: int = 0,
        resolved: int = 0,
        failed: int = 0,
        more: Sequence[tuple[str, int]] = (),
    ) -> int:
        counts = [
            ("letters_selected", selected),
            ("letters_resolved", resolved),
            ("letters_failed", failed),
            *more,
        ]
        record_tool_run(start, warehouse, counts, code)
        return code

    try:
        redrive_options = options.view_as(RedriveOptions)
        selection = Selection(**redrive_options.selection_arguments())
        delivery = redrive_options.delivery()
        store = letter_store(warehouse)
        letters = store.select(selection)
    except ValueError as error:
        return _usage(str(error))
    except Exception as error:  # noqa: BLE001 - any client's failure is infrastructure
        return recorded(
            _infrastructure(f"cannot read dead letters from --warehouse {warehouse}: {error}")
        )
    if not letters:
        print("no dead letters match the selection: nothing to re-drive")
        return recorded(EXIT_DONE)

    by_kind: dict[Kind, list[DeadLetter]] = {kind: [] for kind in Kind}
    for letter in letters:
        by_kind[kind_of(letter)].append(letter)
    # The operator's word applies to the claim each letter names, so one naming none is refused.
    unknown = by_kind[Kind.OUTCOME_UNKNOWN] if delivery is not None else []
    unknown_claims = {
        letter.dead_letter_id: claim
        for letter in unknown
        if (claim := _letter_claim(letter)) is not None
    }
    no_claim = [letter for letter in unknown if letter.dead_letter_id not in unknown_claims]
    to_confirm = unknown_claims if delivery is Delivery.DELIVERED else {}
    if delivery is Delivery.NOT_DELIVERED:
        by_kind[Kind.PAYMENT] += [
            letter for letter in unknown if letter.dead_letter_id in unknown_claims
        ]
    # The senders' letters re-driven here (not sent, or not_delivered): each is resolved only
    # once the ledger holds its message sent, so a run that cannot send them is refused.
    senders = {
        letter.dead_letter_id: effect
        for letter in by_kind[Kind.PAYMENT]
        if (effect := _letter_effect(letter)) is not None
    }
    if senders:
        sender_letters = [
            letter for letter in by_kind[Kind.PAYMENT] if letter.dead_letter_id in senders
        ]
        try:
            refusal = _senders_refusal(sender_letters, options.view_as(SinkOptions).sink_config())
        except ValueError as error:
            return _usage(str(error))
        if refusal is not None:
            return _usage(refusal)
    try:
        reread = reread_records(
            by_kind[Kind.RECORD], from_raw=not warehouse.startswith(BIGQUERY_PREFIX)
        )
    except Exception as error:  # noqa: BLE001
        return recorded(
            _infrastructure(f"cannot read the letters' records again: {error}"), len(letters)
        )
    charge_letters = {
        letter.dead_letter_id: charge
        for letter in by_kind[Kind.PAYMENT]
        if payment_intent_of_letter(letter) is None
        and (charge := charge_id_of_letter(letter)) is not None
    }
    records = [record for _, record in reread.records]
    by_intent = {payment_intent_of_letter(letter) for letter in by_kind[Kind.PAYMENT]} - {None}
    if charge_letters or by_intent or payment_intents_of(records):
        # Checked before it is read: a missing, empty or unreachable archive would
        # otherwise leave every payment "not found", or hang in Beam's retries.
        try:
            options.view_as(BackfillOptions).check_source()
        except ValueError as error:
            return _usage(str(error))
        except InfrastructureError as error:
            return recorded(_infrastructure(str(error)), len(letters))
    try:
        intents_of_charges = _payment_intents_of_charges(
            options, frozenset(charge_letters.values())
        )
    except ValueError as error:
        return _usage(str(error))
    except Exception as error:  # noqa: BLE001
        return recorded(
            _infrastructure(f"cannot read --source to find the letters' charges: {error}"),
            len(letters),
        )
    payment_letters = {
        letter.dead_letter_id: intent
        for letter in by_kind[Kind.PAYMENT]
        if (
            intent := payment_intent_of_letter(letter)
            or intents_of_charges.get(charge_letters.get(letter.dead_letter_id, ""))
        )
        is not None
    }
    charge_not_found = [
        letter for letter in by_kind[Kind.PAYMENT] if letter.dead_letter_id not in payment_letters
    ]
    claims = {
        letter.dead_letter_id: claim
        for letter in by_kind[Kind.PAYMENT]
        if letter.dead_letter_id in payment_letters and (claim := _letter_claim(letter)) is not None
    }
    to_release = {i: claim for i, claim in claims.items() if i in unknown_claims}
    failed_claims = {i: claim for i, claim in claims.items() if i not in unknown_claims}
    ledger_table = getattr(options.view_as(SinkOptions), "sent_messages_table", None)
    if (claims or to_confirm) and not ledger_table:
        return _usage(
            "the selected senders' letters name ledger claims to release or mark sent: give "
            "--sent_messages_table (and the senders' flags)"
        )
    wanted = frozenset(payment_letters.values()) | payment_intents_of(records)
    redriven = [letter for letter, _ in reread.records] + [
        letter for letter in by_kind[Kind.PAYMENT] if letter.dead_letter_id in payment_letters
    ]
    confirming = [letter for letter in unknown if letter.dead_letter_id in to_confirm]
    print(f"selected {len(letters)} dead letters:")
    for letter in redriven:
        note = " (its claim released first)" if letter.dead_letter_id in to_release else ""
        print(f"  re-drive{note}  {describe(letter)}")
    for letter in confirming:
        print(f"  delivered: mark its ledger claim sent, send nothing  {describe(letter)}")
    for letter in reread.unreadable:
        print(f"  unreadable (its record is gone from its source)  {describe(letter)}")
    for letter in charge_not_found:
        print(f"  its charge's events are not in --source (pending)  {describe(letter)}")
    for letter in no_claim:
        print(
            "  not re-driven here (its error names no ledger claim, as letters written before "
            f"letters named theirs: see the runbook)  {describe(letter)}"
        )
    if delivery is None:
        for letter in by_kind[Kind.OUTCOME_UNKNOWN]:
            print(
                "  not re-driven here (its message may have gone: check the target, then "
                f"give --outcome_unknown; see the runbook)  {describe(letter)}"
            )
    for letter in by_kind[Kind.NOT_REDRIVABLE]:
        why = "re-run the backfill over its days"
        if letter.step.startswith(SEND_STEP_PREFIX):
            why = (
                "its message may have gone: check the target, see the runbook"
                if letter.reason == OUTCOME_UNKNOWN
                else "its source names no charge: re-run the backfill over its days"
            )
        print(f"  not re-driven here ({why})  {describe(letter)}")
    if wanted:
        source = options.view_as(BackfillOptions).source
        print(f"re-reading {len(wanted)} payments' events from {source}")
    not_redriven = (
        len(reread.unreadable)
        + len(charge_not_found)
        + len(by_kind[Kind.NOT_REDRIVABLE])
        + len(no_claim)
        + (len(by_kind[Kind.OUTCOME_UNKNOWN]) if delivery is None else 0)
    )

    if dry_run:
        changed_claims = 0
        if delivery is not None and unknown_claims:
            try:
                held = _still_claimed(unknown_claims, str(ledger_table), delivery)
            except Exception as error:  # noqa: BLE001
                return _infrastructure(f"cannot read --sent_messages_table {ledger_table}: {error}")
            changed_claims = _describe_claims(unknown, unknown_claims, held, delivery)
        # A delivered letter whose claim changed stays pending; a not_delivered one is re-driven.
        pending = changed_claims if delivery is Delivery.DELIVERED else 0
        return _dry_run(options, records, wanted, not_redriven + pending)

    run_id = f"redrive-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    sinks = build_checked(
        PROG,
        pipeline,
        options,
        lambda p, o: build(p, o, records=records, payment_intents=wanted, describe_to=None),
    )
    if isinstance(sinks, int):
        return sinks
    ids = [letter.dead_letter_id for letter in redriven]
    table = str(ledger_table)
    try:
        pending_before = store.pending_ids()
        store.claim([*redriven, *confirming], run_id)
        released = _release_claims(claims, table)
        confirmed = _confirm_claims(to_confirm, table, run_id)
        pipeline.run().wait_until_finish()
        claimed = store.claimed(ids, run_id)
        # A payment letter not rewritten by the run, yet without a contribution: its
        # events were not in the re-read range. It stays pending.
        found = store.paid_or_failed(payment_letters.values())
        missing = [
            i for i, intent in payment_letters.items() if i in claimed and intent not in found
        ]
        # A sender's letter is resolved only once its message went: a payment outside the
        # message window, or one that met a claim, sends nothing.
        checked = {i: e for i, e in senders.items() if i in claimed and i not in missing}
        states = _ledger_states(checked, table)
        unsent = sorted(i for i in checked if states[i] != SENT)
        settled = store.settled_at(checked[i][1] for i in unsent)
        unconfirmed = sorted(set(to_confirm) - confirmed)
        store.release([*missing, *unsent, *unconfirmed], run_id)
        resolved = store.resolve(
            sorted((claimed - set(missing) - set(unsent)) | confirmed), run_id, datetime.now(UTC)
        )
        new_letters = store.pending_ids() - pending_before - set(ids)
    except Exception as error:  # noqa: BLE001
        # The claims stay pending either way: release them if the warehouse still answers.
        with contextlib.suppress(Exception):
            store.release([*ids, *to_confirm], run_id)
        return recorded(
            _infrastructure(f"re-drive {run_id} failed, letters left pending: {error}"),
            len(letters),
        )
    failing = len(set(ids) - claimed)
    print(f"re-drive {run_id}: {len(resolved)} marked redriven (redriven_at set)")
    print(f"  failed again the same way (pending, rewritten by this run): {failing}")
    print(
        f"  new dead letters this run wrote (pending; a marked letter may live on in one): "
        f"{len(new_letters)}"
    )
    for letter_id in sorted(new_letters):
        print(f"    {letter_id}")
    print(f"  payment not found in --source (pending): {len(missing)}")
    if failed_claims:
        print(f"  ledger claims of failed sends released: {len(released & set(failed_claims))}")
        print(
            "  ledger claims that changed since the letter (kept): "
            f"{len(set(failed_claims) - released)}"
        )
    print(f"  not re-driven (pending): {not_redriven}")
    more: list[tuple[str, int]] = []
    if any(i not in unknown_claims for i in senders):
        not_sent = len([i for i in unsent if i not in unknown_claims])
        more.append(("sender_letters_not_sent", not_sent))
        print(f"  {_COUNT_LINES['sender_letters_not_sent']}: {not_sent}")
    if delivery is not None:
        changed = (
            set(to_confirm) - confirmed
            if delivery is Delivery.DELIVERED
            else set(to_release) - released
        )
        outcome = [
            ("outcome_unknown_marked_sent", len(confirmed)),
            ("outcome_unknown_claims_released", len(released & set(to_release))),
            ("outcome_unknown_claims_changed", len(changed)),
            ("outcome_unknown_not_sent", len([i for i in unsent if i in unknown_claims])),
            ("outcome_unknown_no_claim", len(no_claim)),
        ]
        print(f"  outcome_unknown letters, {delivery.value} (--outcome_unknown):")
        for name, count in outcome:
            print(f"    {_COUNT_LINES[name]}: {count}")
        more += outcome
    if unsent:
        window = options.view_as(SinkOptions).message_window()
        by_id = {letter.dead_letter_id: letter for letter in letters}
        print("  messages not sent, letters left pending:")
        for i in unsent:
            why = _unsent_reason(checked[i], states[i], settled.get(checked[i][1]), window)
            print(f"    {why}  {describe(by_id[i])}")
    done = len(resolved) == len(letters) and not new_letters
    code = EXIT_DONE if done else EXIT_STILL_FAILING
    return recorded(code, len(letters), len(resolved), failing, more)


#: How the output names the senders' counts (`pipeline_runs` keeps the keys).
_COUNT_LINES = {
    "sender_letters_not_sent": (
        "senders' letters whose message the run did not send (pending, why below)"
    ),
    "outcome_unknown_marked_sent": "ledger claims marked sent (nothing sent, letter resolved)",
    "outcome_unknown_claims_released": "ledger claims released (payment re-driven)",
    "outcome_unknown_claims_changed": "ledger claims that changed since the letter (kept)",
    "outcome_unknown_not_sent": "messages the run did not send (pending, why below)",
    "outcome_unknown_no_claim": "letters naming no claim (refused, pending)",
}


def _describe_claims(
    letters: Sequence[DeadLetter],
    claims: Mapping[str, LetterClaim],
    held: set[str],
    delivery: Delivery,
) -> int:
    """Prints what `delivery` would do to each letter's claim; the number that changed."""
    print(f"dry run: outcome_unknown letters, {delivery.value} (--outcome_unknown):")
    for letter in letters:
        if letter.dead_letter_id not in claims:
            continue
        if letter.dead_letter_id not in held:
            then = (
                "letter left pending"
                if delivery is Delivery.DELIVERED
                else "its payment re-driven, the ledger decides"
            )
            print(f"  claim changed since the letter: kept, {then}  {describe(letter)}")
        elif delivery is Delivery.DELIVERED:
            print(f"  claim as the letter left it: would be marked sent  {describe(letter)}")
        else:
            print(f"  claim as the letter left it: would be released  {describe(letter)}")
    return len(set(claims) - held)


def _dry_run(
    options: PipelineOptions, records: list[SourceRecord], wanted: frozenset[str], not_redriven: int
) -> int:
    with tempfile.TemporaryDirectory(prefix="redrive-dry-run-") as folder:
        prefix = str(Path(folder) / "outputs")
        pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
        try:
            options.view_as(CoreOptions).checked_stripe_mode()
            build(pipeline, options, records=records, payment_intents=wanted, describe_to=prefix)
        except ValueError as error:
            return _usage(str(error))
        pipeline.run().wait_until_finish()
        lines = sorted(
            line for path in Path(folder).glob("outputs*") for line in path.read_text().splitlines()
        )
    print("dry run: they would become (nothing was written, marked or sent):")
    for line in lines:
        print(f"  {line}")
    return EXIT_DONE if not not_redriven else EXIT_STILL_FAILING


def _usage(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _infrastructure(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_INFRASTRUCTURE


if __name__ == "__main__":
    sys.exit(run())
