"""The ``musiq`` command. Each subcommand lives in its own module with ``register(sub)``."""
