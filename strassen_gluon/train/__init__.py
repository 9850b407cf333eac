"""Training: stages, schedules, loops, distillation, checkpoints and logs."""
