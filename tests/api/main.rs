//! Integration tests against the real server over real HTTP, on SQLite and (when
//! `MEDIFY_TEST_PG` is set) PostgreSQL. See `helpers.rs` for the harness.

mod helpers;

mod addresses;
mod asyncapi;
mod auth;
mod bus;
mod catalog;
mod checkout;
mod cluster;
mod consoles;
mod crash;
mod errors;
mod health;
mod inventory;
mod ops;
mod orders;
mod phone;
mod prescriptions;
mod redis;
mod riders;
mod smtp;
mod tracking;
