//! The blocking client of the management protocol, for `rillctl` and tests.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Deserialize;

use crate::{Request, Response};

/// How long [`Client::connect`] waits for the TCP connection and the token's answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Client::call`] waits for an answer unless [`Client::set_timeout`] says
/// otherwise. Generous: creating a job or changing a setting touches disks.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest response line accepted (a status report of many jobs stays far below).
pub const MAX_RESPONSE_LINE: usize = 64 << 20;

/// Why a call to rilld failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to rilld's management API at {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("rilld at {addr} refused the login: {message}")]
    Auth { addr: SocketAddr, message: String },
    #[error("rilld at {addr} did not answer within {secs} s")]
    Timeout { addr: SocketAddr, secs: u64 },
    #[error("rilld at {addr} closed the connection")]
    Closed { addr: SocketAddr },
    #[error("talking to rilld at {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    #[error("rilld at {addr} answered something that is not a management response: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
}

impl ClientError {
    /// Nothing listens at the address: rilld is not running (or listens elsewhere).
    pub fn is_refused(&self) -> bool {
        matches!(self, ClientError::Connect { source, .. }
            if source.kind() == io::ErrorKind::ConnectionRefused)
    }
}

/// The server's answer to the token.
#[derive(Deserialize)]
struct HelloReply {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

/// A logged-in connection to rilld's management API. Requests are answered in order, one
/// at a time.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    timeout: Duration,
}

impl Client {
    /// Connects to `addr` and logs in with `token`.
    pub fn connect(addr: SocketAddr, token: &str) -> Result<Client, ClientError> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|source| ClientError::Connect { addr, source })?;
        // Requests are small; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let writer = stream
            .try_clone()
            .map_err(|source| ClientError::Io { addr, source })?;
        let mut client = Client {
            addr,
            reader: BufReader::new(stream),
            writer,
            timeout: CONNECT_TIMEOUT,
        };
        client.apply_timeout()?;
        let hello = serde_json::json!({ "token": token });
        client.send(&hello)?;
        let line = client.receive()?;
        let reply: HelloReply =
            serde_json::from_slice(&line).map_err(|e| client.protocol(e.to_string()))?;
        match (reply.ok, reply.error) {
            (_, Some(message)) => return Err(ClientError::Auth { addr, message }),
            (true, None) => {}
            (false, None) => return Err(client.protocol("no answer to the token".into())),
        }
        client.set_timeout(DEFAULT_CALL_TIMEOUT)?;
        Ok(client)
    }

    /// The address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How long a call waits for its answer (and for its request to be sent).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        // A zero timeout means "none" to the socket API; keep it finite.
        self.timeout = timeout.max(Duration::from_millis(1));
        self.apply_timeout()
    }

    fn apply_timeout(&mut self) -> Result<(), ClientError> {
        let addr = self.addr;
        let t = Some(self.timeout);
        self.writer
            .set_read_timeout(t)
            .and_then(|()| self.writer.set_write_timeout(t))
            .map_err(|source| ClientError::Io { addr, source })
    }

    /// Sends one request and returns rilld's answer; `Response::Error` is an answer too
    /// (the request was refused), not an `Err`.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        self.send(req)?;
        let line = self.receive()?;
        serde_json::from_slice(&line).map_err(|e| self.protocol(e.to_string()))
    }

    fn send(&mut self, value: &impl serde::Serialize) -> Result<(), ClientError> {
        let mut line = serde_json::to_vec(value)
            .map_err(|e| self.protocol(format!("the request cannot be written as JSON: {e}")))?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .and_then(|()| self.writer.flush())
            .map_err(|e| self.io(e))
    }

    fn receive(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut line = Vec::new();
        let limit = MAX_RESPONSE_LINE as u64 + 1;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(|e| self.io(e))?;
        if n == 0 {
            return Err(ClientError::Closed { addr: self.addr });
        }
        if line.last() != Some(&b'\n') {
            return Err(if line.len() > MAX_RESPONSE_LINE {
                self.protocol(format!("a response longer than {MAX_RESPONSE_LINE} bytes"))
            } else {
                ClientError::Closed { addr: self.addr }
            });
        }
        line.pop();
        Ok(line)
    }

    fn io(&self, source: io::Error) -> ClientError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                addr: self.addr,
                secs: self.timeout.as_secs().max(1),
            },
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => ClientError::Closed { addr: self.addr },
            _ => ClientError::Io {
                addr: self.addr,
                source,
            },
        }
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr,
            detail,
        }
    }
}
