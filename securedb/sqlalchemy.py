"""engine() and async_engine(): SQLAlchemy engines whose connections securedb makes."""
