//! A small HTTP/1.1 client over tokio: JSON requests to one `http://host:port` server,
//! with a pool of keep-alive connections.
//!
//! The simulator only ever talks to one plain-HTTP server on a fixed set of JSON
//! endpoints, so this is all it needs; it keeps the crate free of a full HTTP stack
//! (the workspace has no hyper) and every future `Send`, so agents run on tokio's
//! multi-threaded runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest response body read, bytes.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 64;
/// One request, connection included, may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`Null` when it is empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The problem+json `code`, if the body has one.
    pub fn problem_code(&self) -> Option<String> {
        self.json()
            .get("code")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Conn = BufReader<TcpStream>;

/// A client for one server. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Client {
    /// `host:port`
    authority: String,
    /// `http://host:port`
    base: String,
    idle: Arc<Mutex<Vec<Conn>>>,
}

impl Client {
    /// A client for `base`, which must be `http://host[:port]` (an optional trailing `/`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let rest = base.strip_prefix("http://").ok_or_else(|| {
            anyhow!("--base must start with http:// (TLS is not supported), got {base:?}")
        })?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            bail!("--base must be http://host:port without a path, got {base:?}");
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            base: format!("http://{authority}"),
            authority,
            idle: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// `http://host:port`
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `ws://host:port`
    pub fn ws_base(&self) -> String {
        format!("ws://{}", self.authority)
    }

    /// Sends one request; `body` is sent as JSON. Transport failures are errors; every
    /// HTTP status is a [`Reply`].
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let payload = body.map(|v| v.to_string().into_bytes());
        let body = payload.as_deref().map(|bytes| ("application/json", bytes));
        self.request_bytes(method, path, token, body, headers).await
    }

    /// Sends one request with a body of any type, `(content type, bytes)`, sent as given
    /// (a multipart upload, or a payload whose exact bytes are signed).
    pub async fn request_bytes(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &[u8])>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n",
            self.authority
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let payload: &[u8] = match body {
            Some((content_type, bytes)) => {
                head.push_str(&format!("Content-Type: {content_type}\r\n"));
                bytes
            }
            None => &[],
        };
        head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(payload);

        let fut = async {
            // A pooled connection may have been closed by the server while idle: if it
            // fails before any answer, the request is retried once on a new connection.
            if let Some(conn) = self.take_idle() {
                match self.exchange(conn, &bytes).await {
                    Ok(reply) => return Ok(reply),
                    Err(Failure::BeforeAnswer(_)) => {}
                    Err(Failure::During(e)) => return Err(e),
                }
            }
            let stream = TcpStream::connect(&self.authority)
                .await
                .with_context(|| format!("could not connect to {}", self.base))?;
            stream.set_nodelay(true).ok();
            self.exchange(BufReader::new(stream), &bytes)
                .await
                .map_err(Failure::into_inner)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| anyhow!("{method} {path}: no answer within {REQUEST_TIMEOUT:?}"))?
            .with_context(|| format!("{method} {path}"))
    }

    fn take_idle(&self) -> Option<Conn> {
        self.idle.lock().ok()?.pop()
    }

    fn put_idle(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }

    /// One request and its answer on `conn`, which goes back to the pool if the server
    /// keeps it open.
    async fn exchange(&self, mut conn: Conn, request: &[u8]) -> Result<Reply, Failure> {
        let before = |e: std::io::Error| Failure::BeforeAnswer(e.into());
        conn.get_mut().write_all(request).await.map_err(before)?;
        // Head: read up to the blank line.
        let mut head = Vec::with_capacity(512);
        let n = conn.read_until(b'\n', &mut head).await.map_err(before)?;
        if n == 0 {
            return Err(Failure::BeforeAnswer(anyhow!(
                "connection closed before the answer"
            )));
        }
        self.rest_of_answer(conn, head)
            .await
            .map_err(Failure::During)
    }

    async fn rest_of_answer(&self, mut conn: Conn, mut head: Vec<u8>) -> anyhow::Result<Reply> {
        loop {
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
            let n = conn.read_until(b'\n', &mut head).await?;
            if n == 0 {
                bail!("connection closed in the middle of the answer");
            }
            if head.len() > 64 * 1024 {
                bail!("answer head over 64 KiB");
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut headers);
        res.parse(&head).context("malformed answer head")?;
        let status = res.code.ok_or_else(|| anyhow!("answer without status"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = res.version == Some(0);
        for h in res.headers.iter() {
            let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if h.name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse().context("bad Content-Length")?);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.contains("chunked");
            } else if h.name.eq_ignore_ascii_case("connection") {
                close = value.contains("close");
            }
        }
        let body = if chunked {
            read_chunked(&mut conn).await?
        } else if let Some(len) = length {
            if len > MAX_BODY {
                bail!("answer body of {len} bytes is too large");
            }
            let mut body = vec![0; len];
            conn.read_exact(&mut body).await?;
            body
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            Vec::new()
        } else {
            close = true;
            let mut body = Vec::new();
            (&mut conn)
                .take(MAX_BODY as u64)
                .read_to_end(&mut body)
                .await?;
            body
        };
        if !close {
            self.put_idle(conn);
        }
        Ok(Reply { status, body })
    }
}

/// Why an exchange failed: before any byte of the answer (the request may be retried on
/// a fresh connection: a kept-alive one the server had closed), or during it.
enum Failure {
    BeforeAnswer(anyhow::Error),
    During(anyhow::Error),
}

impl Failure {
    fn into_inner(self) -> anyhow::Error {
        match self {
            Self::BeforeAnswer(e) | Self::During(e) => e,
        }
    }
}

async fn read_chunked(conn: &mut Conn) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).await?;
        let size_hex = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_hex, 16).context("bad chunk size")?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                line.clear();
                let n = conn.read_line(&mut line).await?;
                if n == 0 || line == "\r\n" || line == "\n" {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            bail!("chunked answer body is too large");
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..]).await?;
        let mut crlf = [0u8; 2];
        conn.read_exact(&mut crlf).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert!(Client::new("https://x").is_err());
        assert!(Client::new("http://").is_err());
        assert!(Client::new("http://h:1/api").is_err());
        let c = Client::new("http://127.0.0.1:8080/").expect("client");
        assert_eq!(c.base(), "http://127.0.0.1:8080");
        assert_eq!(c.ws_base(), "ws://127.0.0.1:8080");
        assert_eq!(Client::new("http://h").expect("c").base(), "http://h:80");
    }

    #[tokio::test]
    async fn keep_alive_and_chunked_answers_are_read() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.expect("accept");
            let mut sock = BufReader::new(sock);
            for answer in [
                "HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"b\r\n4\r\n\":2}\r\n0\r\n\r\n",
            ] {
                let mut line = String::new();
                let mut len = 0usize;
                loop {
                    line.clear();
                    sock.read_line(&mut line).await.expect("read");
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.trim().parse().expect("len");
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                sock.read_exact(&mut body).await.expect("body");
                sock.get_mut().write_all(answer.as_bytes()).await.expect("write");
            }
        });
        let c = Client::new(&format!("http://{addr}")).expect("client");
        let body = serde_json::json!({"x": 1});
        let r = c
            .request("POST", "/a", Some("t"), Some(&body), &[])
            .await
            .expect("first");
        assert_eq!((r.status, r.json()["a"].as_i64()), (201, Some(1)));
        let r = c
            .request("GET", "/b", None, None, &[])
            .await
            .expect("second");
        assert_eq!((r.status, r.json()["b"].as_i64()), (200, Some(2)));
    }
}
