"""Where records go: one module per store, and the router that sends each output to its sink."""
