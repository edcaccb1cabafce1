CREATE TABLE IF NOT EXISTS "soft_opt_ins" (
    "payment_id" VARCHAR NOT NULL,
    "message" VARCHAR NOT NULL,
    "livemode" BOOLEAN NOT NULL,
    "account" VARCHAR,
    "created" TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE "soft_opt_ins" IS 'Soft opt-in messages, one per paid payment with an identity.';
COMMENT ON COLUMN "soft_opt_ins"."payment_id" IS 'Stripe charge id (ch_...).';
COMMENT ON COLUMN "soft_opt_ins"."message" IS 'JSON body sent to the soft opt-in queue.';
COMMENT ON COLUMN "soft_opt_ins"."livemode" IS 'False for Stripe test mode.';
COMMENT ON COLUMN "soft_opt_ins"."account" IS 'Stripe partner event source (ed_...).';
COMMENT ON COLUMN "soft_opt_ins"."created" IS 'When the payment settled (UTC).';
