"""Training data: readers and validators for the published dataset formats."""
