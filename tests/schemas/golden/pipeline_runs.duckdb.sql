CREATE TABLE IF NOT EXISTS "pipeline_runs" (
    "run_id" VARCHAR NOT NULL,
    "job" VARCHAR NOT NULL,
    "arguments" VARCHAR[] NOT NULL,
    "runner" VARCHAR NOT NULL,
    "source" VARCHAR NOT NULL,
    "range_start" TIMESTAMPTZ,
    "range_end" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ NOT NULL,
    "ended_at" TIMESTAMPTZ,
    "exit_code" BIGINT,
    "records_read" BIGINT,
    "processed" BIGINT,
    "skipped" BIGINT,
    "dead_lettered" BIGINT,
    "rows_written" STRUCT("destination" VARCHAR, "rows" BIGINT)[] NOT NULL,
    "code_version" VARCHAR NOT NULL,
    "git_commit" VARCHAR,
    "dataflow_job_id" VARCHAR,
    "dataflow_project" VARCHAR,
    "dataflow_region" VARCHAR,
    "dataflow_state" VARCHAR,
    "recorded_at" TIMESTAMPTZ
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
COMMENT ON COLUMN "pipeline_runs"."ended_at" IS 'When the run ended and its summary was made (UTC); for a Dataflow job, when it entered its terminal state. Null while a submitted job has not ended.';
COMMENT ON COLUMN "pipeline_runs"."exit_code" IS 'The job''s exit code: 0 done, 1 records unaccounted for, 3 failed (a Dataflow job''s terminal state maps onto these: see the README). Null while a submitted job has not ended.';
COMMENT ON COLUMN "pipeline_runs"."records_read" IS 'Records read (the summary''s first line). Null while a submitted job has not ended.';
COMMENT ON COLUMN "pipeline_runs"."processed" IS 'Records processed. Null while a submitted job has not ended.';
COMMENT ON COLUMN "pipeline_runs"."skipped" IS 'Records skipped, duplicates included. Null while a submitted job has not ended.';
COMMENT ON COLUMN "pipeline_runs"."dead_lettered" IS 'Records dead-lettered. Null while a submitted job has not ended.';
COMMENT ON COLUMN "pipeline_runs"."rows_written" IS 'What the run itself wrote, per destination (from the writers'' counters; not the tables'' totals). Empty while a submitted job has not ended.';
COMMENT ON COLUMN "pipeline_runs"."code_version" IS 'Version of the installed stripe-contributions-pipeline package.';
COMMENT ON COLUMN "pipeline_runs"."git_commit" IS 'Commit of the checkout the job ran from, when known.';
COMMENT ON COLUMN "pipeline_runs"."dataflow_job_id" IS 'Id of the Dataflow job the run submitted; null for a run on the launching machine.';
COMMENT ON COLUMN "pipeline_runs"."dataflow_project" IS 'Google Cloud project of the Dataflow job.';
COMMENT ON COLUMN "pipeline_runs"."dataflow_region" IS 'Region of the Dataflow job.';
COMMENT ON COLUMN "pipeline_runs"."dataflow_state" IS 'The Dataflow job''s state (JOB_STATE_RUNNING, JOB_STATE_DONE, ...) when this row was written from the Jobs API; null at submission (not looked at yet) and for local runs.';
COMMENT ON COLUMN "pipeline_runs"."recorded_at" IS 'When this row was written (UTC). A run''s latest row is the one that counts; null in rows of earlier releases, which wrote one row per run.';
