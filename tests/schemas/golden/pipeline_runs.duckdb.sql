CREATE TABLE IF NOT EXISTS "pipeline_runs" (
    "run_id" VARCHAR NOT NULL,
    "job" VARCHAR NOT NULL,
    "arguments" VARCHAR[] NOT NULL,
    "runner" VARCHAR NOT NULL,
    "source" VARCHAR NOT NULL,
    "range_start" TIMESTAMPTZ,
    "range_end" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ NOT NULL,
    "ended_at" TIMESTAMPTZ NOT NULL,
    "exit_code" BIGINT NOT NULL,
    "records_read" BIGINT NOT NULL,
    "processed" BIGINT NOT NULL,
    "skipped" BIGINT NOT NULL,
    "dead_lettered" BIGINT NOT NULL,
    "rows_written" STRUCT("destination" VARCHAR, "rows" BIGINT)[] NOT NULL,
    "code_version" VARCHAR NOT NULL,
    "git_commit" VARCHAR
);
COMMENT ON TABLE "pipeline_runs" IS 'One row per run of the backfill or the streaming job.';
COMMENT ON COLUMN "pipeline_runs"."run_id" IS 'Random id of the run (UUID4), printed at the end of the summary.';
COMMENT ON COLUMN "pipeline_runs"."job" IS 'backfill or streaming.';
COMMENT ON COLUMN "pipeline_runs"."arguments" IS 'Command-line arguments as given, with any DSN password masked (secrets come from the environment and are never arguments).';
COMMENT ON COLUMN "pipeline_runs"."runner" IS 'Beam runner: FnApiRunner when none was given.';
COMMENT ON COLUMN "pipeline_runs"."source" IS 'What was read: the archive folder or s3:// prefix, or the stream.';
COMMENT ON COLUMN "pipeline_runs"."range_start" IS '--start of a backfill (UTC), when given.';
COMMENT ON COLUMN "pipeline_runs"."range_end" IS '--end of a backfill (UTC, exclusive), when given.';
COMMENT ON COLUMN "pipeline_runs"."started_at" IS 'When the job was launched (UTC).';
COMMENT ON COLUMN "pipeline_runs"."ended_at" IS 'When the run ended and its summary was made (UTC).';
COMMENT ON COLUMN "pipeline_runs"."exit_code" IS 'The job''s exit code: 0 done, 1 records unaccounted for, 3 failed.';
COMMENT ON COLUMN "pipeline_runs"."records_read" IS 'Records read (the summary''s first line).';
COMMENT ON COLUMN "pipeline_runs"."processed" IS 'Records processed.';
COMMENT ON COLUMN "pipeline_runs"."skipped" IS 'Records skipped, duplicates included.';
COMMENT ON COLUMN "pipeline_runs"."dead_lettered" IS 'Records dead-lettered.';
COMMENT ON COLUMN "pipeline_runs"."rows_written" IS 'What the run itself wrote, per destination (from the writers'' counters; not the tables'' totals).';
COMMENT ON COLUMN "pipeline_runs"."code_version" IS 'Version of the installed stripe-contributions-pipeline package.';
COMMENT ON COLUMN "pipeline_runs"."git_commit" IS 'Commit of the checkout the job ran from, when known.';
