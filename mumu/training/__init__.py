"""Training: the three stages on accelerate (stages, optimiser and schedule, the loop, checkpoints)."""
