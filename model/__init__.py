"""The training stage: data -> features -> trained pipeline -> artifact on disk."""
