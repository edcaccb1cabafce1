CREATE TABLE IF NOT EXISTS "thank_you_emails" (
    "payment_id" TEXT NOT NULL,
    "message" TEXT NOT NULL,
    "livemode" BOOLEAN NOT NULL,
    "account" TEXT,
    "created" TIMESTAMPTZ NOT NULL,
    PRIMARY KEY ("payment_id")
);
COMMENT ON TABLE "thank_you_emails" IS 'Thank-you email messages, one per paid payment with an identity.';
COMMENT ON COLUMN "thank_you_emails"."payment_id" IS 'Stripe charge id (ch_...).';
COMMENT ON COLUMN "thank_you_emails"."message" IS 'JSON body sent to the email queue (contains the email address).';
COMMENT ON COLUMN "thank_you_emails"."livemode" IS 'False for Stripe test mode.';
COMMENT ON COLUMN "thank_you_emails"."account" IS 'Stripe partner event source (ed_...).';
COMMENT ON COLUMN "thank_you_emails"."created" IS 'When the payment settled (UTC).';
