//! Wire protocol: versioned frames between a source and a target (being written).
