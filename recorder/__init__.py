"""The record: every bus message stored in tiers (SQLite by default), history served over the bus, a line-protocol sink, Prometheus metrics."""
