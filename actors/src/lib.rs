//! Medify's dispatch core.
//!
//! This crate will hold the actors that own live state (orders, rider sessions, inventory
//! shards), the H3 matcher and the ports the server implements. It depends on no HTTP, SQL
//! or Redis crate: those live in the `medify` crate, behind the ports defined here.
//!
//! Layout (see shared ARCHITECTURE.md): `order.rs`, `rider.rs`, `inventory.rs`,
//! `matcher/`, `fleet.rs`, `supervise.rs`, `ports.rs`. Each arrives with the issue that
//! needs it; the foundation only fixes the crate boundary.
