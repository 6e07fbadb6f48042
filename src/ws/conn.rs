//! A WebSocket connection that costs next to nothing while idle.
//!
//! actix-http's HTTP/1 dispatcher keeps an 8 KiB read and an 8 KiB write buffer for the
//! whole life of a connection, upgraded or not; with thousands of mostly idle rider sockets
//! that alone was two thirds of the server's memory. The rider socket therefore leaves the
//! dispatcher after its handshake ([`crate::server`]) and runs on this transport instead:
//!
//! - [`Frames`] reads into a buffer on the stack and keeps bytes on the heap only while a
//!   frame is incomplete; between frames it holds no allocation at all;
//! - [`Outbox`] writes frames straight to the socket and buffers only what the kernel would
//!   not take (a slow reader), up to [`MAX_PENDING_OUT`], after which the peer is dropped.
//!
//! A socket opened on a kept-alive connection (some clients, awc among them, reuse pooled
//! connections for the upgrade) stays in the dispatcher: [`payload_frames`] and
//! [`Outbox::body`] give the same actor the same frames over the request payload and a
//! streaming response body.
//!
//! Framing, masking and the size limit are actix-http's own WebSocket codec.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use std::convert::Infallible;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, Encoder};

/// Bytes read from the socket in one go (on the stack).
const READ_CHUNK: usize = 4096;
/// Outgoing bytes a peer may leave unread before it is dropped.
pub const MAX_PENDING_OUT: usize = 256 * 1024;

/// Frames arriving on an upgraded connection.
pub struct Frames {
    io: Rc<TcpStream>,
    codec: Codec,
    /// Bytes of a frame not yet complete; empty (and unallocated) between frames.
    partial: BytesMut,
    eof: bool,
}

impl Frames {
    /// `early` holds bytes the client sent right behind its handshake.
    pub fn new(io: Rc<TcpStream>, max_frame: usize, early: BytesMut) -> Self {
        Self {
            io,
            codec: Codec::new().max_size(max_frame),
            partial: early,
            eof: false,
        }
    }

    fn decode(&mut self) -> Result<Option<Frame>, ProtocolError> {
        if self.partial.is_empty() {
            return Ok(None);
        }
        let frame = self.codec.decode(&mut self.partial)?;
        if self.partial.is_empty() {
            // Let the allocation go with the frame instead of keeping it for the next one.
            self.partial = BytesMut::new();
        }
        Ok(frame)
    }
}

impl Stream for Frames {
    type Item = Result<Frame, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.decode() {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            if this.eof {
                return Poll::Ready(None);
            }
            if let Err(e) = std::task::ready!(this.io.poll_read_ready(cx)) {
                return Poll::Ready(Some(Err(ProtocolError::Io(e))));
            }
            let mut chunk = [0u8; READ_CHUNK];
            match this.io.try_read(&mut chunk) {
                Ok(0) => this.eof = true,
                Ok(n) => this.partial.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Some(Err(ProtocolError::Io(e)))),
            }
        }
    }
}

/// What [`Outbox::flush`] left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything is on the wire.
    All,
    /// The kernel's buffer is full: wait for [`Outbox::writable`] and flush again.
    Blocked,
}

/// Frames leaving on an upgraded connection.
pub struct Outbox {
    codec: Codec,
    way: Way,
}

enum Way {
    /// Straight to the socket; `pending` holds what it would not take yet.
    Direct {
        io: Rc<TcpStream>,
        pending: BytesMut,
    },
    /// Into the streaming body of actix-http's dispatcher (a socket opened on a kept-alive
    /// connection).
    Body(mpsc::Sender<Bytes>),
}

/// Frames a dispatcher-held socket may have queued before its peer counts as not reading.
const MAX_QUEUED_FRAMES: usize = 256;

impl Outbox {
    pub fn direct(io: Rc<TcpStream>) -> Self {
        Self {
            codec: Codec::new(),
            way: Way::Direct {
                io,
                pending: BytesMut::new(),
            },
        }
    }

    /// An outbox feeding a response body, and that body.
    pub fn body() -> (
        Self,
        impl Stream<Item = Result<Bytes, Infallible>> + 'static,
    ) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_FRAMES);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|bytes| (Ok(bytes), rx))
        });
        let outbox = Self {
            codec: Codec::new(),
            way: Way::Body(tx),
        };
        (outbox, body)
    }

    /// Queues a frame and writes what the socket takes. Errors when the peer is gone or has
    /// left too much unread ([`MAX_PENDING_OUT`] bytes, or [`MAX_QUEUED_FRAMES`] frames).
    pub fn send(&mut self, message: Message) -> io::Result<Flushed> {
        match &mut self.way {
            Way::Direct { pending, .. } => {
                self.codec
                    .encode(message, pending)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                if pending.len() > MAX_PENDING_OUT {
                    return Err(io::Error::other("peer is not reading its frames"));
                }
                self.flush()
            }
            Way::Body(tx) => {
                let mut frame = BytesMut::new();
                self.codec
                    .encode(message, &mut frame)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                tx.try_send(frame.freeze())
                    .map_err(|_| io::Error::other("peer is gone or not reading its frames"))?;
                Ok(Flushed::All)
            }
        }
    }

    /// Writes pending bytes until done or the socket would block.
    pub fn flush(&mut self) -> io::Result<Flushed> {
        let Way::Direct { io, pending } = &mut self.way else {
            return Ok(Flushed::All);
        };
        while !pending.is_empty() {
            match io.try_write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => pending.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) => return Err(e),
            }
        }
        *pending = BytesMut::new();
        Ok(Flushed::All)
    }

    /// Resolves when the socket can take more bytes.
    pub fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + 'static {
        let io = match &self.way {
            Way::Direct { io, .. } => Some(io.clone()),
            Way::Body(_) => None,
        };
        async move {
            match io {
                Some(io) => io.writable().await,
                None => Ok(()),
            }
        }
    }
}

/// Frames decoded from a request payload (a socket that stayed in actix-http's dispatcher).
pub fn payload_frames(
    payload: actix_web::web::Payload,
    max_frame: usize,
) -> impl Stream<Item = Result<Frame, ProtocolError>> + 'static {
    let codec = Codec::new().max_size(max_frame);
    futures_util::stream::unfold(
        (payload, codec, BytesMut::new(), false),
        |(mut payload, mut codec, mut buf, mut done)| async move {
            loop {
                if done {
                    return None;
                }
                match codec.decode(&mut buf) {
                    Ok(Some(frame)) => return Some((Ok(frame), (payload, codec, buf, done))),
                    Ok(None) => {}
                    Err(e) => {
                        done = true;
                        return Some((Err(e), (payload, codec, buf, done)));
                    }
                }
                match payload.next().await {
                    Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                    Some(Err(e)) => {
                        done = true;
                        let e = ProtocolError::Io(io::Error::other(e.to_string()));
                        return Some((Err(e), (payload, codec, buf, done)));
                    }
                    None => return None,
                }
            }
        },
    )
}
