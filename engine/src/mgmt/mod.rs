//! The local management API that rillctl drives (being written).
