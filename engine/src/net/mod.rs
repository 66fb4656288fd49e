//! The network between a source and a target: the frames on the wire (`proto`), the
//! mutual TLS that carries them (`tls`), and the source's side of a connection (`link`).
//!
//! These sit together because they change together: a new frame kind touches the
//! protocol, the link that sends it and the session on the replica side that answers it,
//! and nothing else in the engine should care how bytes cross the network. The target's
//! half of a connection lives with the replica (`crate::replica`), since what it does with
//! a frame is apply it.

pub(crate) mod link;
pub mod proto;
pub mod tls;
