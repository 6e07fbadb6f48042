//! WebSocket endpoints: thin transport actors in front of the core's actors. Everything
//! that uses actix-web-actors lives here, so moving to actix-ws touches this folder alone.
//! The tracking and ops sockets are actix-web-actors `WebsocketContext`s; the rider socket,
//! the one there are thousands of, runs on the lean transport in [`conn`].

pub mod admission;
pub mod conn;
pub mod fleet_feed;
pub mod ops;
pub mod rider;
pub mod rider_queue;
pub mod track;

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};

/// Every socket is pinged this often (docs/protocol.md: every 10 s) ...
pub(crate) const PING_EVERY: Duration = Duration::from_secs(10);
/// ... and dropped when nothing (no frame, no pong) came for this long.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);

/// A socket actor that knows when its peer last sent anything.
pub(crate) trait Heard: Actor<Context = ws::WebsocketContext<Self>> {
    fn last_heard(&self) -> Instant;
}

/// The close (1001) owed to a peer from which nothing came for [`SILENCE_LIMIT`], if it is
/// owed: every socket's keep-alive asks this each [`PING_EVERY`], and pings otherwise.
pub(crate) fn silence_close(last_heard: Instant) -> Option<CloseReason> {
    (last_heard.elapsed() > SILENCE_LIMIT).then(|| CloseReason {
        code: CloseCode::Away,
        description: Some("silent for 30 s".into()),
    })
}

/// Pings the peer every [`PING_EVERY`]; closes (1001) and stops a socket from which nothing
/// came for [`SILENCE_LIMIT`].
pub(crate) fn keep_alive<A: Heard>(ctx: &mut ws::WebsocketContext<A>) {
    ctx.run_interval(PING_EVERY, |act, ctx| {
        match silence_close(act.last_heard()) {
            Some(reason) => {
                ctx.close(Some(reason));
                ctx.stop();
            }
            None => ctx.ping(b""),
        }
    });
}

/// What a watch-only socket (tracking, ops) does with what its peer sends: answers pings,
/// honours a close, stops on a protocol error and ignores the rest.
pub(crate) fn watcher_frame<A>(
    msg: Result<ws::Message, ProtocolError>,
    ctx: &mut ws::WebsocketContext<A>,
) where
    A: Actor<Context = ws::WebsocketContext<A>>,
{
    match msg {
        Ok(ws::Message::Ping(p)) => ctx.pong(&p),
        Ok(ws::Message::Close(reason)) => {
            ctx.close(reason);
            ctx.stop();
        }
        Ok(_) => {}
        Err(_) => ctx.stop(),
    }
}
