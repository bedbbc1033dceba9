"""Ring ownership, op submission/completion, cancellation, IO managers, feature probe."""
