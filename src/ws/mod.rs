//! WebSocket endpoints: thin transport actors in front of the core's actors. Everything
//! that uses actix-web-actors lives here, so moving to actix-ws touches this folder alone.

pub mod ops;
pub mod rider;
pub mod track;

use std::time::Duration;

/// Every socket is pinged this often (PROTOCOL.md: every 10 s) ...
pub(crate) const PING_EVERY: Duration = Duration::from_secs(10);
/// ... and dropped when nothing (no frame, no pong) came for this long.
pub(crate) const SILENCE_LIMIT: Duration = Duration::from_secs(30);
