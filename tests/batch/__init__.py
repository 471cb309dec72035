"""Cohort audit tests (a package: tests/fhir has a test_parity.py too)."""
