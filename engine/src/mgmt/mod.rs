//! The server side of the local management API that `rillctl` drives.
//!
//! The protocol, its types, the token file and the blocking client are the crate
//! `rill-mgmt` (see its documentation for the protocol and why it is its own crate), which
//! `rillctl` is built from without the engine; they are re-exported here. What stays is the
//! server: the daemon implements [`Control`], and [`serve`] runs the protocol around it on
//! tokio.

mod server;

#[cfg(test)]
mod tests;

pub use rill_mgmt::*;
pub use server::{serve, serve_with, ServeOptions};

/// What the daemon does with each request. Called on a blocking thread (tokio's
/// `spawn_blocking`), so an implementation may take locks, touch the job store and do
/// file I/O; requests of different connections may run at the same time.
pub trait Control: Send + Sync + 'static {
    fn call(&self, req: Request) -> Response;
}
