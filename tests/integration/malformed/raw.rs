//! A raw HTTP/1.1 exchange over TCP: the request bytes go out exactly as
//! generated (no client library would send most of them), and only the
//! response head is parsed (httparse), so the body can be skipped and a
//! kept-alive connection reused.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one exchange may take before the test calls the server hung.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// More than any response Tessera sends to a malformed request.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// What the server did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// It closed the connection without a response (a framing error).
    Closed,
    /// Nothing within [`ANSWER_WITHIN`].
    Hung,
}

pub struct Request {
    pub bytes: Vec<u8>,
    /// Well framed: the connection may carry the next request too.
    pub keep_alive: bool,
    /// A `HEAD` request: the response has no body.
    pub head: bool,
}

/// One worker's connection, reused while requests are well framed.
pub struct Client {
    addr: SocketAddr,
    open: Option<Connection>,
}

struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Client { addr, open: None }
    }

    pub async fn send(&mut self, request: &Request) -> Answer {
        let reused = request.keep_alive && self.open.is_some();
        let answer = tokio::time::timeout(ANSWER_WITHIN, self.exchange(request)).await;
        match answer {
            Err(_) => {
                self.open = None;
                Answer::Hung
            }
            // A kept-alive connection the server had already closed.
            Ok(Answer::Closed) if reused => {
                self.open = None;
                tokio::time::timeout(ANSWER_WITHIN, self.exchange(request))
                    .await
                    .unwrap_or(Answer::Hung)
            }
            Ok(answer) => answer,
        }
    }

    async fn exchange(&mut self, request: &Request) -> Answer {
        let mut connection = match self.open.take() {
            Some(open) if request.keep_alive => open,
            _ => match TcpStream::connect(self.addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    Connection {
                        stream,
                        buffer: Vec::new(),
                    }
                }
                Err(_) => return Answer::Closed,
            },
        };
        // A refused body can end the connection early; the answer may
        // still be readable.
        let _ = connection.stream.write_all(&request.bytes).await;
        if !request.keep_alive {
            let _ = connection.stream.shutdown().await;
        }
        match connection.read_response(request.head).await {
            Ok(Some((status, reusable))) => {
                if reusable && request.keep_alive {
                    self.open = Some(connection);
                }
                Answer::Status(status)
            }
            Ok(None) | Err(_) => Answer::Closed,
        }
    }
}

enum Body {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

impl Connection {
    async fn fill(&mut self) -> io::Result<bool> {
        if self.buffer.len() > MAX_RESPONSE {
            return Err(io::Error::other("response too large"));
        }
        let mut chunk = [0u8; 16 * 1024];
        let read = self.stream.read(&mut chunk).await?;
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(read > 0)
    }

    /// The final status and whether the connection can be reused, or
    /// `None` when the server closed before a complete head.
    async fn read_response(&mut self, head_request: bool) -> io::Result<Option<(u16, bool)>> {
        loop {
            let (length, status, body, close) = loop {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buffer) {
                    Ok(httparse::Status::Complete(length)) => {
                        let status = response.code.unwrap_or(0);
                        let (body, close) = framing(&response, head_request);
                        break (length, status, body, close);
                    }
                    Ok(httparse::Status::Partial) => {
                        if !self.fill().await? {
                            return Ok(None);
                        }
                    }
                    Err(e) => return Err(io::Error::other(e)),
                }
            };
            self.buffer.drain(..length);
            if (100..200).contains(&status) && status != 101 {
                continue; // an interim answer (100 Continue); the final one follows
            }
            let complete = match body {
                Body::None => true,
                Body::Length(n) => self.skip(n).await?,
                Body::Chunked => self.skip_chunked().await?,
                Body::UntilClose => {
                    while self.fill().await? {}
                    false
                }
            };
            return Ok(Some((status, complete && !close)));
        }
    }

    async fn skip(&mut self, n: usize) -> io::Result<bool> {
        while self.buffer.len() < n {
            if !self.fill().await? {
                return Ok(false);
            }
        }
        self.buffer.drain(..n);
        Ok(true)
    }

    async fn line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                return Ok(Some(line));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// RFC 9112 §7.1: chunks until the last, then trailers.
    async fn skip_chunked(&mut self) -> io::Result<bool> {
        loop {
            let Some(line) = self.line().await? else {
                return Ok(false);
            };
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(io::Error::other)?;
            if size == 0 {
                while let Some(trailer) = self.line().await? {
                    if trailer.is_empty() {
                        return Ok(true);
                    }
                }
                return Ok(false);
            }
            if !self.skip(size + 2).await? {
                return Ok(false);
            }
        }
    }
}

/// How the response body is delimited (RFC 9112 §6.3), and whether the
/// server said it closes the connection.
fn framing(response: &httparse::Response<'_, '_>, head_request: bool) -> (Body, bool) {
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    let close =
        response.version == Some(0) || header("connection").is_some_and(|v| v.contains("close"));
    let status = response.code.unwrap_or(0);
    let body = if head_request || status == 204 || status == 304 || status < 200 {
        Body::None
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        Body::Chunked
    } else if let Some(length) = header("content-length").and_then(|v| v.trim().parse().ok()) {
        Body::Length(length)
    } else {
        Body::UntilClose
    };
    (body, close)
}
