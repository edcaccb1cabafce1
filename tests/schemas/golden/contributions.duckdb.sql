CREATE TABLE IF NOT EXISTS "contributions" (
    "payment_id" VARCHAR NOT NULL,
    "payment_intent_id" VARCHAR NOT NULL,
    "checkout_session_id" VARCHAR NOT NULL,
    "contribution_id" VARCHAR NOT NULL,
    "status" VARCHAR NOT NULL,
    "amount" DECIMAL(38, 9) NOT NULL,
    "amount_refunded" DECIMAL(38, 9) NOT NULL,
    "currency" VARCHAR NOT NULL,
    "country_code" VARCHAR NOT NULL,
    "country_source" VARCHAR NOT NULL,
    "payment_method" VARCHAR,
    "identity_id" VARCHAR,
    "disputed" BOOLEAN NOT NULL,
    "livemode" BOOLEAN NOT NULL,
    "account" VARCHAR,
    "created" TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE "contributions" IS 'One row per one-off contribution paid on a Stripe-hosted page.';
COMMENT ON COLUMN "contributions"."payment_id" IS 'Stripe charge id (ch_...): the payment''s natural key.';
COMMENT ON COLUMN "contributions"."payment_intent_id" IS 'Stripe PaymentIntent id (pi_...).';
COMMENT ON COLUMN "contributions"."checkout_session_id" IS 'Stripe Checkout Session id (cs_...).';
COMMENT ON COLUMN "contributions"."contribution_id" IS 'UUIDv5 of payment_id under CONTRIBUTION_ID_NAMESPACE.';
COMMENT ON COLUMN "contributions"."status" IS 'Paid, Failed or Refunded (refunded only when fully refunded).';
COMMENT ON COLUMN "contributions"."amount" IS 'Amount paid, major units, exact.';
COMMENT ON COLUMN "contributions"."amount_refunded" IS 'Cumulative amount refunded, major units.';
COMMENT ON COLUMN "contributions"."currency" IS 'ISO 4217 code, upper case.';
COMMENT ON COLUMN "contributions"."country_code" IS 'Card country, else billing address country, else GB.';
COMMENT ON COLUMN "contributions"."country_source" IS 'Where country_code came from: card, address or default.';
COMMENT ON COLUMN "contributions"."payment_method" IS 'Stripe payment method type (card, bacs_debit, ...).';
COMMENT ON COLUMN "contributions"."identity_id" IS 'Reader''s identity id, when known.';
COMMENT ON COLUMN "contributions"."disputed" IS 'True once any dispute was opened on the charge.';
COMMENT ON COLUMN "contributions"."livemode" IS 'False for Stripe test-mode payments.';
COMMENT ON COLUMN "contributions"."account" IS 'Stripe partner event source (ed_...), one per Stripe account.';
COMMENT ON COLUMN "contributions"."created" IS 'When the payment settled (Stripe event time, UTC).';
