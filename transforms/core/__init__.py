"""The IO-free core: `ProcessStripeEvents` and its DoFns, the disk grouping, metrics."""
