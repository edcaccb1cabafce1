"""The sink contract (`Sink`, `Flag`) and the configuration built from the flags (`SinkConfig`).

See the package docstring (`transforms.sinks`) for how a sink is written and
registered. Nothing here knows a particular sink.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from apache_beam.pvalue import PCollection

from schemas.generate import table_of


@dataclass(frozen=True)
class Flag:
    """One command-line flag of a sink, `--<name>`, whose value is text or None.

    `help` is argparse's (it may use `%(default)s`). `env` names an
    environment variable the options layer reads when the flag is not given:
    the way to pass a secret. A `secret` value is never shown (`SinkConfig`'s
    repr says `<set>`). Sinks that share a flag declare the same `Flag`.
    """

    name: str
    help: str
    default: str | None = None
    env: str | None = None
    secret: bool = False

    @property
    def option(self) -> str:
        """The flag as written on the command line: `--<name>`."""
        return f"--{self.name}"


#: Why a message was not sent, as counted (`output_skipped_<reason>`).
MESSAGE_TOO_OLD = "message_too_old"
NO_MESSAGES = "no_messages"


@dataclass(frozen=True)
class MessageWindow:
    """Which messages a run sends (emails, soft opt-ins, bus events, store messages).

    `send=False` sends none (`--no_messages`). Otherwise a message is sent
    when the payment it is about was created at or after `not_before` (None:
    every one): a backfill replays payments whose messages went out when
    they were paid, and the ledger only knows what this pipeline sent. A
    message with no time of its own (a refund found due once its payment's
    message went out in this run) follows its payment, which was recent.
    The default sends everything: the jobs always pass the window of their
    flags (`measured_from`).
    """

    send: bool = True
    not_before: datetime | None = None

    @classmethod
    def measured_from(cls, run_started_at: datetime, max_age: timedelta) -> MessageWindow:
        """Messages of payments younger than `max_age` at `run_started_at`."""
        return cls(send=True, not_before=run_started_at - max_age)

    @property
    def sends_all(self) -> bool:
        return self.send and self.not_before is None

    def skip_reason(self, created: datetime | None) -> str | None:
        """None when a message of a payment created then is sent, else why not."""
        if not self.send:
            return NO_MESSAGES
        if self.not_before is not None and created is not None and created < self.not_before:
            return MESSAGE_TOO_OLD
        return None


#: Every message is sent: the default of the senders (the jobs pass their flags' window).
SEND_ALL = MessageWindow()

#: A sink's check: raises with a one-line message naming the flags or the resource.
Check = Callable[["SinkConfig"], None]
#: A sink's writer: applies its PTransform(s), each under its own step label, to
#: `{record type: PCollection}` and returns the dead letters of what it could not
#: write (a warehouse returns None: it writes the dead letters itself).
Write = Callable[["SinkConfig", Mapping[type, PCollection]], "PCollection | None"]


@dataclass(frozen=True)
class Sink:
    """One sink: its flags, its checks and its writer.

    - `name`: how errors and the README name it.
    - `flags`: every flag it reads; the first one selects it (a value given
      means "write here") unless `selected_when` says otherwise.
    - `takes`: the record types it takes over; they no longer go to the
      warehouse. `reads`: record types it is given as well, which still go to
      the warehouse (the store reads the adjustments to fold in refunds).
    - `write`: see `Write`.
    - `check_flags`: run when the configuration is built, if the sink is
      selected; raises ValueError naming the flags (a bad combination).
    - `check`: run before launch, if the sink is selected; raises
      `transforms.infrastructure.ConfigurationError` when its infrastructure
      (queue, table, ...) is missing or not as expected. Sinks sharing one
      `check` function (or `check_flags`) have it run once.
    - `warehouse`: one of the warehouses, of which exactly one is selected:
      it receives every record type no other selected sink takes, and every
      dead letter. `loads_in_panes`: the router applies the job's load
      windowing (`TriggerLoads`, on unbounded input) before its writer.
    - `production`: a production effect (anything but the local DuckDB
      warehouse): with one selected, the run must serve one Stripe mode
      (`--stripe_mode live|test`), so test payments never reach live resources.
    - `reads_dead_letters`: the sink runs after every other non-warehouse
      sink and is given, as `DeadLetter`, every dead letter the warehouse
      will get (the core's and the other sinks'); its own dead letters join
      them (a metrics sink counts them).
    - `sends`: the ledger kinds of the effects it sends exactly once
      (`transforms.sinks.ledger`; its letters' step is `send_<kind>`), so a
      re-drive of such a letter knows which flag it needs. `follows_message_window`:
      it sends them only within the run's `MessageWindow` (False: always, as metrics).
    """

    name: str
    flags: tuple[Flag, ...]
    write: Write
    takes: tuple[type, ...] = ()
    reads: tuple[type, ...] = ()
    check_flags: Check | None = None
    check: Check | None = None
    selected_when: Callable[[SinkConfig], bool] | None = None
    warehouse: bool = False
    loads_in_panes: bool = False
    production: bool = True
    reads_dead_letters: bool = False
    sends: tuple[str, ...] = ()
    follows_message_window: bool = True

    def is_selected(self, config: SinkConfig) -> bool:
        if self.selected_when is not None:
            return self.selected_when(config)
        return bool(config[self.flags[0].name])


def flags_of(sinks: tuple[Sink, ...]) -> dict[str, Flag]:
    """{flag name: Flag} of every sink, each flag once, in registry order.

    Raises ValueError when two sinks declare different flags of one name.
    """
    flags: dict[str, Flag] = {}
    for sink in sinks:
        for flag in sink.flags:
            known = flags.setdefault(flag.name, flag)
            if known != flag:
                raise ValueError(f"{flag.option} is declared twice, differently ({sink.name})")
    return flags


@dataclass(frozen=True)
class SinkConfig:
    """Which sinks a run writes to: the registered `sinks` and the values of their flags.

    `values` maps flag names to values (a flag left out takes its default).
    `temp_location` is Beam's `--temp_location`, for sinks that stage files
    (BigQuery file loads). `messages`: which messages the sinks that send
    them (queues, the bus) send; the other sinks write everything. Building
    it checks the flags: exactly one warehouse, no record type taken by two
    sinks, and each selected sink's `check_flags`; a bad combination raises
    ValueError naming the flags.
    """

    values: Mapping[str, str | None]
    sinks: tuple[Sink, ...]
    temp_location: str | None = None
    messages: MessageWindow = SEND_ALL

    def __post_init__(self) -> None:
        flags = flags_of(self.sinks)
        unknown = sorted(set(self.values) - set(flags))
        if unknown:
            raise ValueError(f"no sink has the flags {', '.join(unknown)}")
        values = {name: self.values.get(name, flag.default) for name, flag in flags.items()}
        object.__setattr__(self, "values", MappingProxyType(values))
        warehouses = [sink.name for sink in self.selected if sink.warehouse]
        if len(warehouses) != 1:
            raise ValueError(f"exactly one warehouse must be selected, not {warehouses}")
        for record_type in {t for sink in self.selected for t in sink.takes}:
            takers = [sink for sink in self.selected if record_type in sink.takes]
            if len(takers) > 1:
                raise ValueError(
                    f"{' and '.join(sink.flags[0].option for sink in takers)} both take "
                    f"{table_of(record_type).name}: give one"
                )
        for check in dict.fromkeys(sink.check_flags for sink in self.selected):
            if check is not None:
                check(self)

    def __getitem__(self, flag: str) -> str | None:
        """The value of `--<flag>` (None when neither given nor defaulted)."""
        return self.values[flag]

    @property
    def selected(self) -> tuple[Sink, ...]:
        """The sinks this run writes to, in registry order."""
        return tuple(sink for sink in self.sinks if sink.is_selected(self))

    @property
    def warehouse(self) -> Sink:
        """The one selected warehouse."""
        return next(sink for sink in self.selected if sink.warehouse)

    @property
    def production_flags(self) -> tuple[str, ...]:
        """The selecting flag of each selected production sink, in registry order."""
        return tuple(sink.flags[0].option for sink in self.selected if sink.production)

    def taken(self) -> frozenset[type]:
        """The record types a selected sink other than the warehouse takes."""
        return frozenset(t for sink in self.selected if not sink.warehouse for t in sink.takes)

    def __repr__(self) -> str:
        # Never show a secret (a DSN may hold a password) in display data or errors.
        flags = flags_of(self.sinks)
        shown = ", ".join(
            f"{name}={'<set>' if flags[name].secret and value else repr(value)}"
            for name, value in self.values.items()
        )
        return (
            f"SinkConfig({shown}, temp_location={self.temp_location!r}, messages={self.messages!r})"
        )
