//! WebSocket endpoints: thin transport actors in front of the core's actors. Everything
//! that uses actix-web-actors lives here, so moving to actix-ws touches this folder alone.

pub mod rider;
pub mod track;
