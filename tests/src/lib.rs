//! Shared helpers for rill integration tests (owned by the tests helper).
