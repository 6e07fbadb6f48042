//! The pharmacist agent: one per pharmacy, signed in as that pharmacy's staff account
//! (role `pharmacy`, made by the admin during set-up). Every `poll_interval_s` it reads its
//! pharmacy's orders (`GET /api/v1/orders`, newest first, as that account), and for each
//! order `awaiting_prescription` it thinks for `review_think_s`, then approves it
//! (`approve_probability`) or rejects it with a reason (`POST /api/v1/orders/{id}/
//! prescription`). The server's answer is when the review counts (the ledger's `review`).
//!
//! The think time, the decision and the reason come from the order's own RNG stream (the
//! scenario's seed and the order's schedule index), so they do not depend on when the
//! pharmacist happened to look or which order it saw first.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use uuid::Uuid;

use crate::api::{Api, Session};
use crate::customer::{count_failure, retryable};
use crate::metrics::Metrics;
use crate::scenario::PharmacistBehaviour;
use crate::{draw_in, stream_rng, STREAM_REVIEW};

/// Orders per page read.
const PER_PAGE: u32 = 100;
/// Pages read per look at most (10 000 orders of one pharmacy).
const MAX_PAGES: u32 = 100;

/// What a rejection tells the customer.
const REASONS: &[&str] = &[
    "The prescription is not legible",
    "The prescription has expired",
    "The dose on the prescription does not match the order",
    "The prescriber's signature is missing",
];

/// One pharmacy's pharmacist.
pub struct PharmacistAgent {
    pub api: Api,
    pub session: Arc<Session>,
    pub metrics: Arc<Metrics>,
    pub behaviour: PharmacistBehaviour,
    pub seed: u64,
    /// Becomes `true` when the run ends.
    pub stop: watch::Receiver<bool>,
}

/// A decision taken, waiting for its think time to pass.
struct Decision {
    at: Instant,
    order: Uuid,
    approve: bool,
    reason: &'static str,
}

/// What the pharmacist remembers between looks.
#[derive(Default)]
struct Desk {
    /// Orders decided on (sent or waiting in `due`).
    decided: HashSet<Uuid>,
    /// Orders seen past review (any status after `awaiting_prescription`): statuses never
    /// go back.
    past: HashSet<Uuid>,
    /// Orders seen awaiting review that the ledger did not know yet (their customer had
    /// not read the placement's answer), or still `confirmed`: looked for again until
    /// found.
    unresolved: HashSet<Uuid>,
    due: Vec<Decision>,
}

impl PharmacistAgent {
    /// Looks, thinks and reviews until the run stops.
    pub async fn run(mut self) {
        let interval = Duration::from_secs_f64(self.behaviour.poll_interval_s);
        let mut desk = Desk::default();
        let mut next_look = Instant::now();
        loop {
            if *self.stop.borrow() {
                return;
            }
            if Instant::now() >= next_look {
                self.look(&mut desk).await;
                next_look = Instant::now() + interval;
            }
            desk.due.sort_by_key(|d| d.at);
            while desk.due.first().is_some_and(|d| d.at <= Instant::now()) {
                let d = desk.due.remove(0);
                self.review(&mut desk, &d).await;
            }
            let wake = desk.due.first().map_or(next_look, |d| d.at.min(next_look));
            tokio::select! {
                _ = sleep_until(wake) => {}
                _ = self.stop.changed() => return,
            }
        }
    }

    /// Reads the pharmacy's orders, newest first, until every order on a page was known
    /// before (and no order seen earlier is still unresolved), or the list ends.
    async fn look(&self, desk: &mut Desk) {
        let token = match self.session.token(&self.api).await {
            Ok(t) => t,
            Err(e) => return count_failure(&self.metrics, "refresh", &e),
        };
        let mut missing = desk.unresolved.clone();
        for page in 1..=MAX_PAGES {
            let (orders, more) = match self.api.orders_page(&token, page, PER_PAGE).await {
                Ok(p) => p,
                Err(e) => return count_failure(&self.metrics, "list orders", &e),
            };
            let mut all_known = true;
            for (id, status) in orders {
                missing.remove(&id);
                if desk.decided.contains(&id) || desk.past.contains(&id) {
                    continue;
                }
                all_known = false;
                if status == "confirmed" {
                    // Not at review yet (its first step is still to come, e.g. while
                    // dispatch changes nodes in a cluster): look for it again.
                    desk.unresolved.insert(id);
                    continue;
                }
                if status != "awaiting_prescription" {
                    desk.past.insert(id);
                    desk.unresolved.remove(&id);
                    continue;
                }
                match self.metrics.index_of(id) {
                    Some(index) => {
                        desk.unresolved.remove(&id);
                        desk.decided.insert(id);
                        desk.due.push(self.decide(id, index));
                    }
                    None => {
                        desk.unresolved.insert(id);
                    }
                }
            }
            if !more || (all_known && missing.is_empty()) {
                return;
            }
        }
    }

    /// The pharmacist's decision on the order at `index`, from that order's stream.
    fn decide(&self, order: Uuid, index: u64) -> Decision {
        let mut rng = stream_rng(self.seed, STREAM_REVIEW, index);
        let think = draw_in(&mut rng, self.behaviour.review_think_s);
        let approve = rng.random_bool(self.behaviour.approve_probability);
        let reason = REASONS[rng.random_range(0..REASONS.len())];
        Decision {
            at: Instant::now() + Duration::from_secs_f64(think),
            order,
            approve,
            reason,
        }
    }

    /// Sends a decision. One that failed in a way that may pass (no answer, a node
    /// changing hands) is forgotten, so the next look decides it again (the same way: the
    /// decision comes from the order's own stream) if it is still awaiting review.
    async fn review(&self, desk: &mut Desk, d: &Decision) {
        let token = match self.session.token(&self.api).await {
            Ok(t) => t,
            Err(e) => return count_failure(&self.metrics, "refresh", &e),
        };
        match self
            .api
            .review_prescription(&token, d.order, d.approve, d.reason)
            .await
        {
            Ok(_) => self.metrics.reviewed(d.order, d.approve),
            Err(e) => {
                count_failure(&self.metrics, "review prescription", &e);
                if retryable(&e) {
                    desk.decided.remove(&d.order);
                }
            }
        }
    }
}
