"""Helpers that several test files share. What the perf scripts need too (the tiny run's
overrides, case folders) lives in ``consistent123.testing`` instead, so nothing outside tests/
imports tests/."""
