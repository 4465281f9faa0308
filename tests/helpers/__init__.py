"""Helpers the tests share: servers, crowds of callers, factories, observers."""
