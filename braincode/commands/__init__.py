"""Sub-commands of the ``braincode`` CLI: each module has ``register(subparsers)``."""
