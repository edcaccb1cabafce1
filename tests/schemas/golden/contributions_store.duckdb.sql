CREATE TABLE IF NOT EXISTS "contributions_store" (
    "payment_provider" VARCHAR NOT NULL,
    "payment_status" VARCHAR NOT NULL,
    "payment_id" VARCHAR NOT NULL,
    "identity_id" VARCHAR,
    "email" VARCHAR,
    "created" TIMESTAMPTZ NOT NULL,
    "currency" VARCHAR NOT NULL,
    "amount" DECIMAL(38, 9) NOT NULL,
    "country_code" VARCHAR,
    "country_subdivision_code" VARCHAR,
    "postal_code" VARCHAR,
    "contribution_id" VARCHAR NOT NULL,
    "livemode" BOOLEAN NOT NULL,
    "account" VARCHAR
);
COMMENT ON TABLE "contributions_store" IS 'Operational contributions store, upserted by payment id.';
COMMENT ON COLUMN "contributions_store"."payment_provider" IS 'Stripe.';
COMMENT ON COLUMN "contributions_store"."payment_status" IS 'Paid, Failed or Refunded.';
COMMENT ON COLUMN "contributions_store"."payment_id" IS 'Stripe charge id (ch_...).';
COMMENT ON COLUMN "contributions_store"."identity_id" IS 'Reader''s identity id.';
COMMENT ON COLUMN "contributions_store"."email" IS 'Reader''s email (personal data).';
COMMENT ON COLUMN "contributions_store"."created" IS 'When the payment settled (UTC).';
COMMENT ON COLUMN "contributions_store"."currency" IS 'ISO 4217 code, upper case.';
COMMENT ON COLUMN "contributions_store"."amount" IS 'Amount, major units.';
COMMENT ON COLUMN "contributions_store"."country_code" IS 'Country, ISO alpha-2.';
COMMENT ON COLUMN "contributions_store"."country_subdivision_code" IS 'Billing address state (personal data).';
COMMENT ON COLUMN "contributions_store"."postal_code" IS 'Billing postal code (personal data).';
COMMENT ON COLUMN "contributions_store"."contribution_id" IS 'The contribution''s UUID.';
COMMENT ON COLUMN "contributions_store"."livemode" IS 'False for Stripe test mode.';
COMMENT ON COLUMN "contributions_store"."account" IS 'Stripe partner event source (ed_...).';
