CREATE TABLE IF NOT EXISTS "thank_you_emails" (
    "payment_id" VARCHAR NOT NULL,
    "message" VARCHAR NOT NULL,
    "livemode" BOOLEAN NOT NULL,
    "account" VARCHAR,
    "created" TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE "thank_you_emails" IS 'Thank-you email messages, one per paid payment with an identity.';
COMMENT ON COLUMN "thank_you_emails"."payment_id" IS 'Stripe charge id (ch_...).';
COMMENT ON COLUMN "thank_you_emails"."message" IS 'JSON body sent to the email queue (contains the email address).';
COMMENT ON COLUMN "thank_you_emails"."livemode" IS 'False for Stripe test mode.';
COMMENT ON COLUMN "thank_you_emails"."account" IS 'Stripe partner event source (ed_...).';
COMMENT ON COLUMN "thank_you_emails"."created" IS 'When the payment settled (UTC).';
