//! rill-tools: administration and benchmarking tools (owned by the bench helper).
