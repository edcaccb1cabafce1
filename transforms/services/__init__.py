"""IO steps that are neither sources nor sinks: calls to other services, e.g. Identity."""
