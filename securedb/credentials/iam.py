"""IAM auth tokens signed locally (SigV4 presign for rds-db)."""
