"""The cloud: gRPC ingest, storage, the bus, and the live feeds and API."""
