"""Failover-class error classification and run_transaction."""
