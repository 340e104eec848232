"""The producer: the HTTP API that validates, stores and enqueues, locally and as the producer Worker."""
