"""Credentials: a refresh-ahead cache over IAM token, Secrets Manager and static sources."""
