CREATE TABLE IF NOT EXISTS "dead_letters" (
    "dead_letter_id" VARCHAR NOT NULL,
    "step" VARCHAR NOT NULL,
    "reason" VARCHAR NOT NULL,
    "error" VARCHAR NOT NULL,
    "raw" VARCHAR NOT NULL,
    "source" VARCHAR NOT NULL,
    "event_id" VARCHAR,
    "time" TIMESTAMPTZ,
    "redriven_at" TIMESTAMPTZ,
    "redrive_run_id" VARCHAR
);
COMMENT ON TABLE "dead_letters" IS 'Records and payments that could not be processed, with the reason.';
COMMENT ON COLUMN "dead_letters"."dead_letter_id" IS 'Deterministic id: hash of step, source and raw.';
COMMENT ON COLUMN "dead_letters"."step" IS 'Pipeline step that failed (decode, classify, join, write_...).';
COMMENT ON COLUMN "dead_letters"."reason" IS 'Short machine-readable reason (invalid_json, charge_missing, ...).';
COMMENT ON COLUMN "dead_letters"."error" IS 'Human-readable error.';
COMMENT ON COLUMN "dead_letters"."raw" IS 'The raw input (record text or payment summary).';
COMMENT ON COLUMN "dead_letters"."source" IS 'Where it came from: file@byte_offset, or stream/shard/sequence.';
COMMENT ON COLUMN "dead_letters"."event_id" IS 'Stripe event id, when known.';
COMMENT ON COLUMN "dead_letters"."time" IS 'Arrival time of the record, when known (UTC).';
COMMENT ON COLUMN "dead_letters"."redriven_at" IS 'When pipelines.redrive resolved the letter (UTC); null while pending.';
COMMENT ON COLUMN "dead_letters"."redrive_run_id" IS 'Run id of the re-drive that claimed (then resolved) the letter; null if none.';
