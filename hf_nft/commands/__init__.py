"""Sub-commands of the ``hf-nft`` CLI; each module defines ``register(subparsers)`` setting ``func``."""
