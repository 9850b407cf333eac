"""Training: phases, schedules, loops, distillation, checkpoints and logs."""
