"""Where records go: one module per sink, the registry of them all, and the router.

Every sink follows one contract (`contract.Sink`): its flags, its checks and
its writer. `registry.SINKS` lists every sink; the options layer
(`pipelines.options.SinkOptions`) declares their flags and builds a
`contract.SinkConfig` from their values, the launcher
(`pipelines.launch.check_sinks`) runs their pre-launch checks, and the
router (`router.WriteOutputs`) gives each selected sink its record types.
None of them names a sink.

Adding a sink is one new module plus one line in `registry.SINKS`. The module
holds the writer (a PTransform with plain constructor arguments: it never
reads options or the environment) and, at its end, the sink:

    QUEUE_URL = Flag("things_queue_url", "SQS queue URL for things. Default: the warehouse.")

    def _write(config: SinkConfig, pcolls: Mapping[type, PCollection]) -> PCollection:
        sent = pcolls[Thing] | "SendThings" >> SendThings(config[QUEUE_URL.name])
        return sent.dead_letters

    SINK = Sink(
        name="things",
        flags=(QUEUE_URL,),            # the first flag selects the sink
        write=_write,                  # applies the writer under its step label
        takes=(Thing,),                # no longer written to the warehouse
        reads=(),                      # given too, and still written to the warehouse
        check=lambda config: check_things_queue(config[QUEUE_URL.name]),
    )

- `Flag(name, help, default=None, env=None, secret=False)`: `--name`; `env`
  is the environment variable the options layer reads when the flag is not
  given (secrets come only from there or the flag, never from logs);
  `secret` masks the value in `SinkConfig`'s repr. Sinks that share a flag
  declare the same `Flag` object.
- `write(config, pcolls)` receives `{record type: PCollection}` of what the
  sink `takes` and `reads`, applies the writer under its own, stable step
  label (labels are an interface: see `tests/pipelines/golden/`) and
  returns the `PCollection[DeadLetter]` of what it could not write; the
  router sends them to the warehouse's `dead_letters`.
- `check_flags(config)`: a bad combination of flag values, ValueError
  naming the flags; run when the `SinkConfig` is built. `check(config)`:
  the pre-launch check of the sink's infrastructure, raising
  `transforms.infrastructure.ConfigurationError` with a one-line message.
  Both run only for selected sinks, and once when sinks share the function.
- A sink that sends effects through the ledger (`ledger.SendExactlyOnceFn`)
  names their kinds in `sends`: `pipelines.redrive` then knows which flag a
  `send_<kind>` letter needs, and refuses a re-drive that lacks it.
- A record type has at most one sink taking it: two selected sinks that
  take the same record type are refused ("--a and --b both take ...").
- The warehouses (`duckdb`, `bigquery`, both `warehouse=True`, selected by
  `--warehouse`) receive everything no other selected sink takes, and
  every dead letter. A BigQuery warehouse refuses the record types with
  personal data (`bigquery.PERSONAL_RECORD_TYPES`): each needs a sink of
  its own.

What the writers share lives in `common.py`: the `--warehouse` flag, the
one dead letter for a record that fails validation (`invalid_row`, reason
`invalid_row`), and `WriteInBatches`, the DoFn base that buffers a bundle's
elements and writes them in batches.
"""
