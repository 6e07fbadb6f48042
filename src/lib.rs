//! Medify: a realtime medicine-delivery dispatch server.
//!
//! This crate is everything that speaks HTTP, WebSocket, SQL or Redis. The dispatch core
//! (order, rider and inventory actors, the matcher) lives in the `medify-actors` crate and
//! knows none of that; this crate implements its ports.
//!
//! The entry point for both the binary and the tests is [`startup::Application::build`].

pub mod app;
pub mod auth;
pub mod batch;
pub mod bus;
pub mod catalog;
pub mod catalog_sync;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod error;
pub mod etag;
pub mod extract;
pub mod notify;
pub mod objects;
pub mod pagination;
pub mod payments;
pub mod redis;
pub mod repair;
pub mod routes;
pub mod schema;
pub mod search;
pub mod seed;
pub mod server;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ws;
