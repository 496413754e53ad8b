"""Subcommands of the shared core (synth, dataset, bundle, demo)."""
