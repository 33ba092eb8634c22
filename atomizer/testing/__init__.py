"""Test helpers for atomizer and its plugins (Hypothesis strategies); needs the dev extra."""
