"""The securedb command: check, token, shell, audit, ca."""
