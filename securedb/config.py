"""Config: parse a URL, keyword options and SECUREDB_* variables; validate; infer region."""
