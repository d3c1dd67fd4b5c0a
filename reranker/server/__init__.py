"""The gRPC transport: servicer, error mapping, metrics, health, reflection, TLS and tokens."""
