CREATE TABLE IF NOT EXISTS "acquisitions" (
    "event_timestamp" TIMESTAMPTZ NOT NULL,
    "product" TEXT NOT NULL,
    "amount" NUMERIC(38, 9) NOT NULL,
    "country_code" TEXT NOT NULL,
    "currency" TEXT NOT NULL,
    "component_id" TEXT,
    "component_type" TEXT,
    "campaign_codes" TEXT[] NOT NULL,
    "source" TEXT,
    "referrer_url" TEXT,
    "ab_tests" JSONB NOT NULL,
    "payment_frequency" TEXT NOT NULL,
    "payment_provider" TEXT NOT NULL,
    "print_options" JSONB,
    "browser_id" TEXT,
    "identity_id" TEXT,
    "page_view_id" TEXT,
    "referrer_page_view_id" TEXT,
    "labels" TEXT[] NOT NULL,
    "promo_code" TEXT,
    "reused_existing_payment_method" BOOLEAN NOT NULL,
    "reader_type" TEXT NOT NULL,
    "acquisition_type" TEXT NOT NULL,
    "zuora_subscription_number" TEXT,
    "contribution_id" TEXT NOT NULL,
    "payment_id" TEXT NOT NULL,
    "query_parameters" JSONB NOT NULL,
    "platform" TEXT NOT NULL,
    "livemode" BOOLEAN NOT NULL,
    "account" TEXT,
    PRIMARY KEY ("payment_id")
);
COMMENT ON TABLE "acquisitions" IS 'Acquisition events (fact_acquisition_event columns) of one-off contributions.';
COMMENT ON COLUMN "acquisitions"."event_timestamp" IS 'When the payment settled (UTC).';
COMMENT ON COLUMN "acquisitions"."product" IS 'CONTRIBUTION for one-off contributions.';
COMMENT ON COLUMN "acquisitions"."amount" IS 'Amount, major units, exact.';
COMMENT ON COLUMN "acquisitions"."country_code" IS 'Card country, else address country, else GB.';
COMMENT ON COLUMN "acquisitions"."currency" IS 'ISO 4217 code, upper case.';
COMMENT ON COLUMN "acquisitions"."component_id" IS 'Page component the reader came from.';
COMMENT ON COLUMN "acquisitions"."component_type" IS 'Type of that component.';
COMMENT ON COLUMN "acquisitions"."campaign_codes" IS 'Zero or one element: the session''s campaign code as sent (several codes joined by commas stay one string).';
COMMENT ON COLUMN "acquisitions"."source" IS 'Acquisition source.';
COMMENT ON COLUMN "acquisitions"."referrer_url" IS 'Referring page.';
COMMENT ON COLUMN "acquisitions"."ab_tests" IS 'A/B tests the reader was in; never null.';
COMMENT ON COLUMN "acquisitions"."payment_frequency" IS 'ONE_OFF.';
COMMENT ON COLUMN "acquisitions"."payment_provider" IS 'As published on the bus (--acquisition_payment_provider).';
COMMENT ON COLUMN "acquisitions"."print_options" IS 'Always null for contributions.';
COMMENT ON COLUMN "acquisitions"."browser_id" IS 'Analytics browser id.';
COMMENT ON COLUMN "acquisitions"."identity_id" IS 'Reader''s identity id, when known.';
COMMENT ON COLUMN "acquisitions"."page_view_id" IS 'Analytics page view id.';
COMMENT ON COLUMN "acquisitions"."referrer_page_view_id" IS 'Page view id of the referring page.';
COMMENT ON COLUMN "acquisitions"."labels" IS 'Free labels.';
COMMENT ON COLUMN "acquisitions"."promo_code" IS 'Promo code; none for contributions.';
COMMENT ON COLUMN "acquisitions"."reused_existing_payment_method" IS 'Always false on hosted checkout.';
COMMENT ON COLUMN "acquisitions"."reader_type" IS 'Direct.';
COMMENT ON COLUMN "acquisitions"."acquisition_type" IS 'Purchase.';
COMMENT ON COLUMN "acquisitions"."zuora_subscription_number" IS 'Always null for contributions.';
COMMENT ON COLUMN "acquisitions"."contribution_id" IS 'The contribution''s UUID.';
COMMENT ON COLUMN "acquisitions"."payment_id" IS 'Stripe charge id (ch_...).';
COMMENT ON COLUMN "acquisitions"."query_parameters" IS 'URL parameters of the landing page.';
COMMENT ON COLUMN "acquisitions"."platform" IS 'Platform: SUPPORT when not given; iosnativeapp/androidnativeapp become IOS_NATIVE_APP/ANDROID_NATIVE_APP.';
COMMENT ON COLUMN "acquisitions"."livemode" IS 'False for Stripe test mode.';
COMMENT ON COLUMN "acquisitions"."account" IS 'Stripe partner event source (ed_...).';
