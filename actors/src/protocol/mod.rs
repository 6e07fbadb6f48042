//! The wire protocol of Medify's three WebSockets, as typed serde values: every frame of
//! the rider socket (`/ws/rider`, both ways, [`rider`]), the tracking socket
//! (`/ws/orders/{id}/track`, server → client, [`track`]) and the ops socket (`/ws/ops`,
//! server → client, [`ops`]).
//!
//! Nothing on those sockets is written any other way: the actors and socket shells build
//! these values and serde writes them. `docs/asyncapi.yaml` describes the same frames, and
//! the integration tests check every frame they read against it. This module decides
//! nothing; it only names the shapes.

pub mod ops;
pub mod rider;
pub mod track;

pub use rider::{decode, Inbound, OfferInfo, Outbound, Place, PointIn};
