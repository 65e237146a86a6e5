"""One training loop for every model, and the run directories it writes."""
