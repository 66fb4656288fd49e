//! Jobs and their state in an embedded database (being written).
