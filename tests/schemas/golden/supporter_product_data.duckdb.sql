CREATE TABLE IF NOT EXISTS "supporter_product_data" (
    "identity_id" VARCHAR NOT NULL,
    "subscription_name" VARCHAR NOT NULL,
    "product_rate_plan_id" VARCHAR NOT NULL,
    "product_rate_plan_name" VARCHAR NOT NULL,
    "contract_effective_date" DATE NOT NULL,
    "term_end_date" DATE NOT NULL,
    "expiry_date" BIGINT NOT NULL,
    "contribution_amount" DECIMAL(38, 9) NOT NULL,
    "contribution_currency" VARCHAR NOT NULL,
    "payment_id" VARCHAR NOT NULL,
    "livemode" BOOLEAN NOT NULL,
    "account" VARCHAR
);
COMMENT ON TABLE "supporter_product_data" IS 'Supporter data store items, keyed by identity and subscription name.';
COMMENT ON COLUMN "supporter_product_data"."identity_id" IS 'Reader''s identity id (partition key).';
COMMENT ON COLUMN "supporter_product_data"."subscription_name" IS '''Stripe - <charge id>'' (sort key).';
COMMENT ON COLUMN "supporter_product_data"."product_rate_plan_id" IS 'single_contribution.';
COMMENT ON COLUMN "supporter_product_data"."product_rate_plan_name" IS 'Single Contribution.';
COMMENT ON COLUMN "supporter_product_data"."contract_effective_date" IS 'Payment date (UTC).';
COMMENT ON COLUMN "supporter_product_data"."term_end_date" IS 'Payment date + 8 years + 1 week.';
COMMENT ON COLUMN "supporter_product_data"."expiry_date" IS 'Epoch seconds of term_end_date + 1 day: the table''s TTL.';
COMMENT ON COLUMN "supporter_product_data"."contribution_amount" IS 'Amount, major units.';
COMMENT ON COLUMN "supporter_product_data"."contribution_currency" IS 'ISO 4217 code, upper case.';
COMMENT ON COLUMN "supporter_product_data"."payment_id" IS 'Stripe charge id (ch_...).';
COMMENT ON COLUMN "supporter_product_data"."livemode" IS 'False for Stripe test mode.';
COMMENT ON COLUMN "supporter_product_data"."account" IS 'Stripe partner event source (ed_...).';
