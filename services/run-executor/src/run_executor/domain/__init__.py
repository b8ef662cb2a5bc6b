"""The run aggregate (pure): its state, how events evolve it, and the rules of its transitions."""
