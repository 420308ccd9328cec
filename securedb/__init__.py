"""securedb: reach Amazon RDS and Aurora the secure way by default."""

__version__ = "0.1.0.dev0"
__all__ = ["__version__"]
