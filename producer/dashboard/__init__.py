"""The dashboard: a sign-in page over the tenant's own API answers, every byte of it served from this package."""
