CREATE TABLE IF NOT EXISTS "payment_adjustments" (
    "adjustment_id" TEXT NOT NULL,
    "payment_id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "event_type" TEXT NOT NULL,
    "amount" NUMERIC(38, 9) NOT NULL,
    "amount_refunded_total" NUMERIC(38, 9),
    "fully_refunded" BOOLEAN,
    "currency" TEXT NOT NULL,
    "dispute_id" TEXT,
    "dispute_status" TEXT,
    "livemode" BOOLEAN NOT NULL,
    "account" TEXT,
    "created" TIMESTAMPTZ NOT NULL,
    PRIMARY KEY ("adjustment_id")
);
COMMENT ON TABLE "payment_adjustments" IS 'Refunds and disputes, one row per Stripe event, keyed by charge id.';
COMMENT ON COLUMN "payment_adjustments"."adjustment_id" IS 'Stripe event id (evt_...) that carried the adjustment; the refund id (re_...) for a refund object''s events.';
COMMENT ON COLUMN "payment_adjustments"."payment_id" IS 'Stripe charge id (ch_...) adjusted.';
COMMENT ON COLUMN "payment_adjustments"."kind" IS 'refund or dispute.';
COMMENT ON COLUMN "payment_adjustments"."event_type" IS 'Stripe event type.';
COMMENT ON COLUMN "payment_adjustments"."amount" IS 'Refund: amount refunded by this event; dispute: disputed amount.';
COMMENT ON COLUMN "payment_adjustments"."amount_refunded_total" IS 'Refund from charge.refunded: cumulative amount refunded so far; null for a refund object, whose amount is that one refund.';
COMMENT ON COLUMN "payment_adjustments"."fully_refunded" IS 'Refund from charge.refunded: True once the whole charge is refunded (its `refunded`); null for a refund object, which does not know.';
COMMENT ON COLUMN "payment_adjustments"."currency" IS 'ISO 4217 code, upper case.';
COMMENT ON COLUMN "payment_adjustments"."dispute_id" IS 'Stripe dispute id (dp_...).';
COMMENT ON COLUMN "payment_adjustments"."dispute_status" IS 'Dispute status after this event.';
COMMENT ON COLUMN "payment_adjustments"."livemode" IS 'False for Stripe test mode.';
COMMENT ON COLUMN "payment_adjustments"."account" IS 'Stripe partner event source (ed_...).';
COMMENT ON COLUMN "payment_adjustments"."created" IS 'Stripe event time (UTC).';
