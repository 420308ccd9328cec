"""Database credentials from AWS Secrets Manager, RDS-managed secrets included."""
