//! The model: statuses, phases, events, payments, the location rules and the one ETA
//! estimate, as
//! values and pure functions. It depends on nothing in the crate but the geometry of
//! [`crate::geo`]; ports, actors and the server all speak these types.

mod eta;
mod fix;
mod order;
mod payment;
mod rider;

pub use eta::{eta_seconds, Estimator, Haversine, SmoothedEta};
pub use fix::{
    check_fix, Fix, FixEffect, Refusal, MAX_ACCURACY_M, MAX_AGE_MS, MAX_FUTURE_MS, MAX_SPEED_MPS,
};
pub use order::{first_step, start, transition, IllegalTransition, OrderEvent, OrderStatus};
pub use payment::{payment_after, CancelReason, PaymentEvent, PaymentMethod, PaymentStatus};
pub use rider::{rider_transition, IllegalPhase, RiderEvent, RiderPhase, RiderState};
