"""Training: bags into batches, one fold fitted, the cross-validation, checkpoints, run folders, predict."""
