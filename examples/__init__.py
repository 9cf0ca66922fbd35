"""Example applications traced with veil (run from a checkout: `python -m examples.shop`)."""
