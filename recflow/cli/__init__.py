"""The ``recflow`` command and its sub-commands (the top layer: may import flows)."""
