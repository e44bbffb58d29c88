"""Shared plumbing: the package logger and progress, atomic output, worker processes."""
