"""Backends: the only code that starts or signals experiments."""
