"""Generated from protos/; do not edit. Regenerate with `make proto`."""
