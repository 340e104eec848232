"""Deploying to Cloudflare (local tooling, never uploaded): Worker bundles, the wrangler configs, account setup
and verification, tenant administration over the remote KV namespace.
"""
