"""Sending: the send use-case, planning, messages, transports, the ledger engine, workers."""
