CREATE TABLE IF NOT EXISTS "acquisition_events" (
    "payment_id" VARCHAR NOT NULL,
    "message" VARCHAR NOT NULL,
    "livemode" BOOLEAN NOT NULL,
    "account" VARCHAR,
    "created" TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE "acquisition_events" IS 'Acquisitions bus events (AcquisitionDataRow JSON), one per paid payment.';
COMMENT ON COLUMN "acquisition_events"."payment_id" IS 'Stripe charge id (ch_...).';
COMMENT ON COLUMN "acquisition_events"."message" IS 'The event''s Detail JSON (contains the email address).';
COMMENT ON COLUMN "acquisition_events"."livemode" IS 'False for Stripe test mode.';
COMMENT ON COLUMN "acquisition_events"."account" IS 'Stripe partner event source (ed_...).';
COMMENT ON COLUMN "acquisition_events"."created" IS 'When the payment settled (UTC).';
