"""The IO-free core composite `ProcessStripeEvents`, its DoFns (adapters of the domain), the disk grouping and the metrics."""
