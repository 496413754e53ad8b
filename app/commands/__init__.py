"""Subcommands that belong to no single package (synth, dataset, bundle, demo)."""
