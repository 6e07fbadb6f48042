//! The application layer: use cases between the HTTP handlers and the core. A handler
//! parses, calls one of these, and maps the result to a status.

pub mod addresses;
pub mod payment_reports;
pub mod placement;
pub mod prescriptions;
