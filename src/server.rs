//! The listener: actix-server workers serving the actix-web app over HTTP/1.1, with one
//! detour for rider sockets.
//!
//! This is what `HttpServer::listen(..).run()` would build, plus a look at the first bytes
//! of each new connection. A connection that opens with `GET /ws/rider` is a rider phone:
//! its handshake still goes through the whole app (middleware, auth, 401 / 403, the
//! handler), but the connection never enters actix-http's dispatcher, which keeps 16 KiB of
//! buffers per connection for its whole life; once the app has answered 101, the socket
//! runs on the lean transport in [`crate::ws::conn`]. Every other connection is handed to
//! actix-http unchanged.
//!
//! The first bytes are read, not peeked, waiting on the socket's readiness: a client that
//! sends half a request line and stops costs nothing until it sends more or its deadline
//! ([`REQUEST_TIMEOUT`], one for the whole rider handshake) passes. What was read is given
//! back in front of the stream ([`Prefixed`]) to whichever side serves the connection.
//!
//! A rider socket opened on a kept-alive connection after other requests cannot take the
//! detour: actix-http serves its handshake, and the socket runs inside the dispatcher with
//! the same actor and rules (WebSocket clients open a new connection for every socket, so
//! only a pooled client such as awc meets this; `medify_rider_sockets_total{transport}`
//! counts both).

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Duration;

use actix_http::body::{BodySize, MessageBody};
use actix_http::h1::Codec;
use actix_http::{
    ConnectionType, HttpService, KeepAlive, Request, Response, ServiceConfig, StatusCode,
};
use actix_server::Server;
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory,
    ServiceFactoryExt,
};
use actix_web::dev::AppConfig;
use actix_web::{Error, HttpMessage};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

/// How the listener behaves (actix-web's `HttpServer` defaults unless said otherwise).
pub struct Listening {
    pub workers: usize,
    pub shutdown_timeout: Duration,
}

/// Time a client has to send its request head (actix-web's default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest rider handshake read (actix-http's own head limit is larger; a rider's
/// handshake is a few hundred bytes).
const MAX_HANDSHAKE: usize = 16 * 1024;
/// Where rider sockets open: the route is registered with it (in `routes`) and the
/// listener below recognises the request line by it, so the two cannot drift apart.
pub const RIDER_SOCKET_PATH: &str = "/ws/rider";

/// The method that opens a rider socket's request line; the path after it is
/// [`RIDER_SOCKET_PATH`], the very constant the route is registered with.
const RIDER_METHOD: &[u8] = b"GET ";
/// Bytes to read to judge a request line: method, path, and the character after the path.
const RIDER_LINE_LEN: usize = RIDER_METHOD.len() + RIDER_SOCKET_PATH.len() + 1;

/// What the first bytes of a connection say: `Some(true)` for a rider socket's request
/// line (`GET /ws/rider` then a space or `?`), `Some(false)` for anything else, `None`
/// while they could still be either.
pub fn rider_request_line(head: &[u8]) -> Option<bool> {
    let expected = || RIDER_METHOD.iter().chain(RIDER_SOCKET_PATH.as_bytes());
    let known = head.len().min(RIDER_LINE_LEN - 1);
    if !head[..known].iter().eq(expected().take(known)) {
        return Some(false);
    }
    match head.get(RIDER_LINE_LEN - 1) {
        Some(b' ' | b'?') => Some(true),
        Some(_) => Some(false),
        None => None,
    }
}

/// Marks a request that arrived as the first on a new connection through the rider detour;
/// the `/ws/rider` handler upgrades only such requests.
#[derive(Clone, Copy)]
pub struct FreshConnection;

/// Put into the 101 response's extensions by a handler that takes over the connection.
pub struct Takeover(pub Box<dyn FnOnce(TcpStream, BytesMut)>);

/// Starts the workers on `listener`. `factory` builds the actix-web `App`, once per worker
/// (and once more per worker for the rider detour).
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    listening: Listening,
    factory: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let local = listener.local_addr()?;
    let builder = Server::build()
        .workers(listening.workers)
        .shutdown_timeout(listening.shutdown_timeout.as_secs())
        // Signals are handled by the caller (see `startup::shutdown_signal`).
        .disable_signals();
    let shutdown = builder.graceful_shutdown_signal();
    let server = builder
        .listen("medify", listener, move || {
            let factory = factory.clone();
            let shutdown = shutdown.clone();
            fn_factory(move || {
                let factory = factory.clone();
                let shutdown = shutdown.clone();
                async move {
                    let app = || {
                        map_config(
                            factory()
                                .into_factory()
                                .map_err(|err| err.into().error_response()),
                            |_| AppConfig::default(),
                        )
                    };
                    let http = HttpService::build()
                        .keep_alive(KeepAlive::default())
                        .client_request_timeout(REQUEST_TIMEOUT)
                        .client_disconnect_timeout(Duration::from_secs(1))
                        .local_addr(local)
                        .graceful_shutdown_signal(move || {
                            let signal = shutdown.clone();
                            async move { signal.notified().await }
                        })
                        .h1(app())
                        .new_service(())
                        .await
                        .map_err(|_| tracing::error!("could not start an HTTP worker"))?;
                    let detour = app()
                        .new_service(())
                        .await
                        .map_err(|_| tracing::error!("could not start a rider worker"))?;
                    let http = Rc::new(http);
                    let detour = Rc::new(detour);
                    let config = ServiceConfig::new(
                        KeepAlive::Disabled,
                        REQUEST_TIMEOUT,
                        Duration::from_secs(1),
                        false,
                        Some(local),
                    );
                    Ok::<_, ()>(fn_service(move |stream: TcpStream| {
                        let http = http.clone();
                        let detour = detour.clone();
                        let config = config.clone();
                        async move {
                            let peer = stream.peer_addr().ok();
                            let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
                            let mut stream = stream;
                            let (rider, head) = sniff(&mut stream, deadline).await;
                            if rider {
                                rider_handshake(stream, head, deadline, peer, &*detour, config)
                                    .await;
                                Ok(())
                            } else {
                                let stream = Prefixed { head, stream };
                                http.call((stream, peer)).await.map_err(|_| ())
                            }
                        }
                    }))
                }
            })
        })?
        .run();
    Ok(server)
}

/// Whether the connection opens with `GET /ws/rider` (followed by a space or `?`), and
/// the bytes read to know. Reads only as far as that takes, waiting for the socket to be
/// readable between reads (never polling); a client that stops or dawdles past `deadline`
/// is left to actix-http with what it sent, which answers it with its own 408.
async fn sniff(stream: &mut TcpStream, deadline: tokio::time::Instant) -> (bool, BytesMut) {
    let mut head = BytesMut::with_capacity(RIDER_LINE_LEN);
    loop {
        if let Some(rider) = rider_request_line(&head) {
            return (rider, head);
        }
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Ok(Ok(())) => {}
            _ => return (false, head),
        }
        // At most what is still needed: anything beyond stays in the socket.
        let mut chunk = [0u8; RIDER_LINE_LEN];
        match stream.try_read(&mut chunk[..RIDER_LINE_LEN - head.len()]) {
            Ok(0) => return (false, head),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return (false, head),
        }
    }
}

/// A stream with bytes already read from it put back in front.
pub struct Prefixed {
    head: BytesMut,
    stream: TcpStream,
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            buf.put_slice(&self.head.split_to(n));
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Reads the rider's request head, lets the app answer it and, on 101, hands the bare
/// connection to the handler's [`Takeover`]. Any other answer is written and the connection
/// closed.
async fn rider_handshake<A, B>(
    mut stream: TcpStream,
    mut buf: BytesMut,
    deadline: tokio::time::Instant,
    peer: Option<SocketAddr>,
    app: &A,
    config: ServiceConfig,
) where
    A: Service<Request>,
    A::Error: Into<Response<actix_http::body::BoxBody>>,
    A::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    let mut codec = Codec::new(config);
    buf.reserve(1024);
    let head = tokio::time::timeout_at(deadline, async {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(actix_http::h1::Message::Item(req))) => return Ok(req),
                Ok(Some(actix_http::h1::Message::Chunk(_))) => return Err(StatusCode::BAD_REQUEST),
                Ok(None) => {}
                Err(_) => return Err(StatusCode::BAD_REQUEST),
            }
            if buf.len() > MAX_HANDSHAKE {
                return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            if stream.readable().await.is_err() {
                return Err(StatusCode::BAD_REQUEST);
            }
            match stream.try_read_buf(&mut buf) {
                Ok(0) => return Err(StatusCode::BAD_REQUEST),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(StatusCode::BAD_REQUEST),
            }
        }
    })
    .await
    .unwrap_or(Err(StatusCode::REQUEST_TIMEOUT));
    let mut req = match head {
        Ok(req) => req,
        Err(status) => {
            let _ = write_response(&mut stream, &mut codec, Response::new(status)).await;
            return;
        }
    };
    req.head_mut().peer_addr = peer;
    req.extensions_mut().insert(FreshConnection);
    let mut res: Response<B> = match app.call(req).await {
        Ok(res) => res.into(),
        Err(res) => {
            let _ = write_response(&mut stream, &mut codec, res.into()).await;
            return;
        }
    };
    let takeover = res.extensions_mut().remove::<Takeover>();
    match takeover {
        Some(Takeover(start)) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let res = res.drop_body();
            let mut out = BytesMut::new();
            if codec
                .encode(
                    actix_http::h1::Message::Item((res, BodySize::None)),
                    &mut out,
                )
                .is_err()
                || stream.write_all(&out).await.is_err()
            {
                return;
            }
            // `buf` now holds only what the client sent behind its head.
            start(stream, buf);
        }
        _ => {
            let _ = write_response(&mut stream, &mut codec, res).await;
        }
    }
}

/// Writes a whole response and closes the connection.
async fn write_response<B: MessageBody>(
    stream: &mut TcpStream,
    codec: &mut Codec,
    mut res: Response<B>,
) -> std::io::Result<()> {
    res.head_mut().set_connection_type(ConnectionType::Close);
    let (res, body) = res.into_parts();
    let body = actix_http::body::to_bytes(body)
        .await
        .map_err(|_| std::io::Error::other("response body failed"))?;
    let mut out = BytesMut::new();
    codec.encode(
        actix_http::h1::Message::Item((res, BodySize::Sized(body.len() as u64))),
        &mut out,
    )?;
    out.extend_from_slice(&body);
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detour_takes_exactly_the_rider_route() {
        let line = |s: &str| rider_request_line(s.as_bytes());
        assert_eq!(
            line(&format!("GET {RIDER_SOCKET_PATH} HTTP/1.1")),
            Some(true)
        );
        assert_eq!(
            line(&format!("GET {RIDER_SOCKET_PATH}?access_token=x")),
            Some(true)
        );
        // Undecided until the character after the path.
        assert_eq!(line(""), None);
        assert_eq!(line("GET /ws/r"), None);
        assert_eq!(line(&format!("GET {RIDER_SOCKET_PATH}")), None);
        // Another route, another method, a longer path.
        assert_eq!(line("GET /ws/orders/1/track"), Some(false));
        assert_eq!(line("POST /ws/rider HTTP/1.1"), Some(false));
        assert_eq!(
            line(&format!("GET {RIDER_SOCKET_PATH}s HTTP/1.1")),
            Some(false)
        );
        assert_eq!(line("G"), None);
        assert_eq!(line("X"), Some(false));
    }
}
