"""`python -m mumu eval`: benchmark tasks, the metrics the field compares on, and the resumable runner."""
