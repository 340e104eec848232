"""The consumer: runs queued crawl slices and webhook deliveries, locally and as the consumer Worker."""
