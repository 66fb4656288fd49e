//! rill-mgmt: the local management API of rilld, as `rillctl` and rilld both speak it.
//!
//! # Protocol
//!
//! JSON lines over TCP on the loopback address, port `ManagementPort` (the guide's 6326).
//! A client first sends `{"token":"<64 hex digits>"}`; the server answers `{"ok":true,
//! "version":"…"}`, or `{"error":"…"}` and closes the connection. Then each line the client
//! sends is one [`Request`] and the server answers each with exactly one [`Response`] line,
//! in order. A line that is not a request (bad JSON, unknown `op`, longer than
//! [`MAX_REQUEST_LINE`]) is answered with `Response::Error` naming the problem, and the
//! connection stays usable: a client bug should cost one request, not the session.
//!
//! # Why a token and not only loopback
//!
//! Binding to 127.0.0.1 keeps other hosts out but not other users of this host, and the API
//! can create jobs that read any directory and trust new peers. So a client must prove it
//! can read the token file (`DataPath/mgmt.token`, mode 0600, owned by rilld's user: root),
//! which makes the API exactly as privileged as that file. The token is 32 random bytes,
//! compared in constant time so that timing does not reveal how much of a guess matched.
//! Failed logins are reported to the daemon (a callback) so it can log and count them.
//!
//! # Why JSON lines
//!
//! One request per line is trivial to drive from a shell (`nc`, `socat`) while debugging,
//! to log, and to extend with fields that older clients ignore. The messages are small and
//! rare; the efficiency of a binary format buys nothing here.
//!
//! This crate holds what both sides share: the requests, responses and status report
//! ([`types`]), the job specification and its checks ([`jobs`]), the token file
//! ([`token`]) and the blocking [`Client`] that `rillctl` uses. The server (tokio) stays in
//! the engine (`rill_engine::mgmt::serve`), which implements the requests.
//!
//! # Why a crate of its own
//!
//! `rillctl` needs the types, the token and the client, and nothing else of the engine: built
//! from this crate (and `rill-settings`, to find rilld) its dependency tree holds no tokio,
//! rustls, redb or aya, so the admin tool builds fast, stays small and cannot reach the data
//! path. There is one definition of each type: the engine uses these.

mod client;
pub mod failover;
pub mod jobs;
pub mod token;
pub mod types;

pub use client::{Client, ClientError, CONNECT_TIMEOUT, DEFAULT_CALL_TIMEOUT, MAX_RESPONSE_LINE};
pub use failover::{FailoverMode, FailoverScripts, FailoverState};
pub use token::{load_or_create_token, read_token, same_token, token_path, TOKEN_FILE_NAME};
pub use types::{
    utc_time, ConError, ConErrorClass, ConState, DataState, JobAction, JobInfo, JobState,
    JobStatus, MirrorState, MirrorStatus, ReplicationStatus, Request, Response, SettingRow,
    StatusReport, TargetCounters, TargetSessionStatus, TargetStatus, TransmitMode, TrustedPeer,
    VerifySchedule, VerifyStatus, MIN_VERIFY_EVERY_SECONDS,
};

/// The management API's port when `ManagementPort` is not set (the guide's 6326).
pub const DEFAULT_MANAGEMENT_PORT: u16 = 6326;

/// The longest request line the server reads; longer lines are answered with an error.
pub const MAX_REQUEST_LINE: usize = 1 << 20;
