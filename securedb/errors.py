"""The securedb exception hierarchy."""
