"""Deploying to Cloudflare (local tooling only, never uploaded): Worker bundles, the wrangler configs, setting up
and verifying an account through wrangler, and tenant administration over the remote KV namespace.

`bundle` is standard library only: wrangler's `[build]` hook runs it with a bare `python3`.
"""
