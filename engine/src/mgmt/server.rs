//! The server side of the management protocol (see the module docs of [`super`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{same_token, Control, Request, Response, MAX_REQUEST_LINE};

/// Limits of [`serve_with`]; [`serve`] uses the defaults.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The longest request line (bytes, without the newline).
    pub max_line: usize,
    /// How long a new connection has to present its token.
    pub auth_timeout: Duration,
    /// Connections served at once; more are answered with an error and closed, so a
    /// runaway script cannot exhaust rilld's file descriptors.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            max_line: MAX_REQUEST_LINE,
            auth_timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

/// The longest first line (the token): far more than `{"token":"…64 digits…"}` needs.
const MAX_HELLO_LINE: usize = 4096;

struct Shared {
    token: String,
    control: Arc<dyn Control>,
    on_auth_failure: Box<dyn Fn(SocketAddr) + Send + Sync>,
    options: ServeOptions,
    connections: AtomicUsize,
}

/// Serves the management protocol on `listener` (bound by the caller to 127.0.0.1 on
/// `ManagementPort`) until the future is dropped or its task aborted. Every connection
/// must first present `token`; `on_auth_failure` is called with the peer's address for
/// every connection that does not (wrong or malformed token, none in time), for the
/// daemon's log and its FailedLogins counter. Requests run `control.call` on a blocking
/// thread.
pub async fn serve(
    listener: TcpListener,
    token: String,
    control: Arc<dyn Control>,
    on_auth_failure: impl Fn(SocketAddr) + Send + Sync + 'static,
) {
    serve_with(
        listener,
        token,
        control,
        on_auth_failure,
        ServeOptions::default(),
    )
    .await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    token: String,
    control: Arc<dyn Control>,
    on_auth_failure: impl Fn(SocketAddr) + Send + Sync + 'static,
    options: ServeOptions,
) {
    let shared = Arc::new(Shared {
        token,
        control,
        on_auth_failure: Box::new(on_auth_failure),
        options,
        connections: AtomicUsize::new(0),
    });
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move { connection(stream, peer, shared).await });
            }
            Err(e) => {
                // EMFILE and the like pass; spinning on them would burn a CPU.
                log::warn!("management API: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Counts a connection while it lives.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Deserialize)]
struct Hello {
    token: String,
}

async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let active = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _slot = Slot(&shared.connections);
    if active > shared.options.max_connections {
        let message = format!(
            "too many management connections (at most {}); try again later",
            shared.options.max_connections
        );
        let _ = write_json(&mut wr, &serde_json::json!({ "error": message })).await;
        return;
    }
    let refuse = |why: String| {
        (shared.on_auth_failure)(peer);
        serde_json::json!({ "error": format!("authentication failed: {why}") })
    };
    let expected =
        r#"the first line must be {"token":"<the 64 hex digits of DataPath/mgmt.token>"}"#;
    let hello = tokio::time::timeout(
        shared.options.auth_timeout,
        read_line(&mut rd, MAX_HELLO_LINE),
    )
    .await;
    let reply = match hello {
        Err(_) => refuse(format!(
            "no token within {} s",
            shared.options.auth_timeout.as_secs_f64()
        )),
        // A probe that connects and leaves without a word tried nothing.
        Ok(Ok(Line::Eof)) | Ok(Err(_)) => return,
        Ok(Ok(Line::TooLong(_))) => refuse(format!("the first line is too long; {expected}")),
        Ok(Ok(Line::Data(bytes))) => match serde_json::from_slice::<Hello>(&bytes) {
            Err(_) => refuse(format!("malformed first line; {expected}")),
            Ok(h) if !same_token(&h.token, &shared.token) => refuse(
                "wrong token (it is in DataPath/mgmt.token, readable by rilld's user only)".into(),
            ),
            Ok(_) => serde_json::json!({ "ok": true, "version": env!("CARGO_PKG_VERSION") }),
        },
    };
    let authenticated = reply.get("ok").is_some();
    if write_json(&mut wr, &reply).await.is_err() || !authenticated {
        return;
    }
    loop {
        let response = match read_line(&mut rd, shared.options.max_line).await {
            Ok(Line::Eof) | Err(_) => return,
            Ok(Line::TooLong(n)) => Response::error(format!(
                "request line too long: {n} bytes or more, at most {} allowed",
                shared.options.max_line
            )),
            Ok(Line::Data(bytes)) => request(&bytes, &shared).await,
        };
        if write_json(&mut wr, &response).await.is_err() {
            return;
        }
    }
}

/// Parses and carries out one request line.
async fn request(bytes: &[u8], shared: &Shared) -> Response {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Response::error(
            r#"empty request line; a request is one JSON object per line, e.g. {"op":"job_list"}"#,
        );
    }
    let req = match serde_json::from_slice::<Request>(bytes) {
        Ok(req) => req,
        Err(e) => {
            return Response::error(format!(
                "malformed request: {e}; a request is one JSON object per line with an \"op\" \
                 such as job_create, job_list, job, status, settings_list, settings_get, \
                 settings_set, identity, trust_add, trust_list or trust_remove"
            ))
        }
    };
    let control = Arc::clone(&shared.control);
    match tokio::task::spawn_blocking(move || control.call(req)).await {
        Ok(response) => response,
        Err(e) => {
            log::error!("management API: a request handler failed: {e}");
            Response::error(
                "internal error: rilld failed while handling this request (see its log)",
            )
        }
    }
}

async fn write_json<W: AsyncWrite + Unpin>(
    wr: &mut W,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    let mut line = match serde_json::to_vec(value) {
        Ok(line) => line,
        // Only a path that is not UTF-8 could get here; say so rather than go silent.
        Err(e) => serde_json::to_vec(&Response::error(format!(
            "internal error: the response cannot be written as JSON: {e}"
        )))?,
    };
    line.push(b'\n');
    wr.write_all(&line).await?;
    wr.flush().await
}

/// One line read by [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// A line without its newline (or the last bytes before end of stream).
    Data(Vec<u8>),
    /// A line longer than the limit, skipped up to and including its newline; the number of
    /// bytes skipped.
    TooLong(usize),
    Eof,
}

/// Reads one line of at most `max` bytes. A longer line is consumed and discarded without
/// being held in memory, so the next line can be read normally.
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    max: usize,
) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut skipped = 0usize;
    loop {
        let buf = rd.fill_buf().await?;
        if buf.is_empty() {
            return Ok(match (skipped, line.is_empty()) {
                (0, true) => Line::Eof,
                (0, false) => Line::Data(line),
                (n, _) => Line::TooLong(n),
            });
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i)),
            None => (buf, None),
        };
        if skipped == 0 && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            skipped = skipped.max(line.len()) + chunk.len();
            line = Vec::new();
        }
        let used = found.map_or(chunk.len(), |i| i + 1);
        rd.consume(used);
        if found.is_some() {
            return Ok(if skipped > 0 {
                Line::TooLong(skipped)
            } else {
                Line::Data(line)
            });
        }
    }
}
