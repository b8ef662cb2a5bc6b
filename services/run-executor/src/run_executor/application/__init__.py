"""Use cases of the run executor: admission and scheduling, the run lifecycle, usage metering."""
