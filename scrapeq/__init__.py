"""The scrapeq command line: the local processes, administration and the Cloudflare tooling."""
