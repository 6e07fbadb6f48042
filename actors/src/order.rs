//! Orders: the pure state machine and the [`OrderActor`] that runs one order.
//!
//! [`transition`] is the whole lifecycle as a function of (status, event); everything else
//! is plumbing around it. The actor owns an order while it is active: every change is
//! checked by [`transition`], written to the journal (order row + `order_events` row, one
//! transaction, guarded by the order's version) and only then announced on the bus and
//! applied to stock. The actor keeps a copy of the record, never the only one: it loads
//! from the journal when it starts and again after every restart, so a crash, a deploy or
//! a supervisor restart loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use uuid::Uuid;

use crate::inventory::Inventory;
use crate::model::{payment_after, CancelReason, PaymentEvent, PaymentMethod};
pub use crate::model::{transition, IllegalTransition, OrderEvent, OrderStatus};
use crate::ports::{
    BoxFuture, Event, EventBus, EventKind, JournalEntry, JournalError, OrderJournal, OrderRecord,
};

/// The bus event announcing a move into `to`.
pub fn event_kind(to: OrderStatus) -> EventKind {
    match to {
        OrderStatus::Confirmed => EventKind::OrderConfirmed,
        OrderStatus::AwaitingPrescription => EventKind::OrderAwaitingPrescription,
        OrderStatus::AwaitingPayment => EventKind::OrderAwaitingPayment,
        OrderStatus::Dispatching => EventKind::OrderDispatching,
        OrderStatus::Assigned => EventKind::OrderAssigned,
        OrderStatus::PickedUp => EventKind::OrderPickedUp,
        OrderStatus::Delivered => EventKind::OrderDelivered,
        OrderStatus::Cancelled => EventKind::OrderCancelled,
        OrderStatus::Failed => EventKind::OrderFailed,
    }
}

/// Wrong delivery codes allowed before further tries are refused for a while.
pub const MAX_CODE_FAILURES: i32 = 5;
/// How long further tries are refused after [`MAX_CODE_FAILURES`].
pub const CODE_LOCKOUT: Duration = Duration::from_secs(60);

/// Why an order refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum OrderError {
    #[error("no such order")]
    NotFound,
    #[error("this order is not assigned to you")]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    /// The order changed under this actor (another node); it reloads.
    #[error("the order changed meanwhile; try again")]
    Stale,
    #[error("wrong delivery code")]
    InvalidCode,
    #[error("too many wrong delivery codes; try again in {0} s")]
    RateLimited(u64),
    #[error("storage: {0}")]
    Storage(String),
    /// In a cluster, the node running the order actors could not be reached in time.
    #[error("dispatch is moving between nodes; try again shortly")]
    Unavailable,
}

impl From<IllegalTransition> for OrderError {
    fn from(e: IllegalTransition) -> Self {
        Self::Conflict(e.to_string())
    }
}

impl From<JournalError> for OrderError {
    fn from(e: JournalError) -> Self {
        Self::Storage(e.0)
    }
}

/// A request to an order actor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    Dispatch,
    /// The order's first step when it needs a review or an online payment first.
    AwaitPrescription,
    AwaitPayment,
    /// A pharmacist (or an admin) approved the prescription.
    Approve {
        by: Uuid,
    },
    /// A pharmacist (or an admin) rejected it; the reason is kept in the journal.
    Reject {
        by: Uuid,
        reason: String,
    },
    /// The review timeout.
    ReviewTimeout,
    /// The payment provider's reports, and the payment timeout.
    PaymentSucceeded,
    PaymentFailed,
    PaymentTimeout,
    /// A rider accepted (from the matcher, or an admin's manual dispatch).
    Assign {
        rider_id: Uuid,
        by: Option<Uuid>,
    },
    PickUp {
        rider_id: Uuid,
    },
    Deliver {
        rider_id: Uuid,
        code: String,
    },
    /// By the customer or an admin; the HTTP layer has checked who may.
    Cancel {
        by: Uuid,
        admin: bool,
    },
    /// The dispatch timeout.
    Fail,
    /// The pickup timeout.
    PickupTimeout,
}

/// Sends a [`Command`]; answers with the order as it is afterwards.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<OrderRecord, OrderError>")]
pub struct Apply(pub Command);

/// The actor's current copy of the order.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Option<OrderRecord>")]
pub struct Get;

/// Makes the actor fail as a crash would (tests, drills): its supervisor restarts it and
/// it reloads the order from the journal.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct InjectFault;

/// What every order actor needs.
pub struct OrderDeps {
    pub journal: Arc<dyn OrderJournal>,
    pub bus: Arc<dyn EventBus>,
    pub inventory: Inventory,
    pub dispatch_timeout: Duration,
    /// How long an assigned rider has to pick the order up before it goes to another.
    pub pickup_timeout: Duration,
    /// How long a prescription may wait for its review, and an online order for its
    /// payment, before the order fails.
    pub review_timeout: Duration,
    pub payment_timeout: Duration,
    /// Where orders in `dispatching` go to find a rider.
    pub matcher: Option<crate::matcher::Matcher>,
}

impl OrderDeps {
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            dispatch: self.dispatch_timeout,
            pickup: self.pickup_timeout,
            review: self.review_timeout,
            payment: self.payment_timeout,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How long each waiting status may last.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub dispatch: Duration,
    pub pickup: Duration,
    pub review: Duration,
    pub payment: Duration,
}

/// The timer an order in `record`'s status runs, as (deadline in epoch ms, what to do
/// then): waiting for a rider fails at the dispatch deadline (counted again from a return
/// to dispatching), an assigned order goes back to dispatching at the pickup deadline, a
/// prescription or a payment not in by its deadline fails the order.
pub fn timer_of(record: &OrderRecord, t: Timeouts) -> Option<(i64, Command)> {
    let after = |d: Duration| record.status_since_ms.saturating_add(millis(d));
    match record.status {
        OrderStatus::Confirmed | OrderStatus::Dispatching => {
            let again = after(t.dispatch);
            let deadline = record.dispatch_deadline_ms.map_or(again, |d| d.max(again));
            Some((deadline, Command::Fail))
        }
        OrderStatus::Assigned => Some((after(t.pickup), Command::PickupTimeout)),
        OrderStatus::AwaitingPrescription => Some((after(t.review), Command::ReviewTimeout)),
        OrderStatus::AwaitingPayment => Some((after(t.payment), Command::PaymentTimeout)),
        _ => None,
    }
}

/// Hands an order waiting for a rider to the matcher.
fn dispatch(deps: &OrderDeps, record: &OrderRecord) {
    if let Some(matcher) = &deps.matcher {
        matcher.dispatch(crate::matcher::DispatchOrder {
            order_id: record.id,
            pickup: record.pickup,
            pickup_name: Some(record.pharmacy_name.clone()),
            dropoff: record.dropoff,
            since_ms: record.confirmed_at_ms,
        });
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One active order. See the module documentation.
pub struct OrderActor {
    id: Uuid,
    deps: Arc<OrderDeps>,
    registry: OrderRegistry,
    record: Option<OrderRecord>,
    timeout: Option<SpawnHandle>,
    locked_until: Option<Instant>,
}

impl OrderActor {
    /// Arms the timer the status has: the dispatch timeout while waiting for a rider, the
    /// pickup timeout while assigned. Deadlines come from the stored record, so a restart
    /// keeps them.
    fn schedule_timeout(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timeout.take() {
            ctx.cancel_future(handle);
        }
        let Some(record) = &self.record else { return };
        let Some((deadline, command)) = timer_of(record, self.deps.timeouts()) else {
            return;
        };
        let wait =
            Duration::from_millis(u64::try_from(deadline.saturating_sub(now_ms())).unwrap_or(0));
        self.timeout = Some(ctx.run_later(wait, move |_, ctx| ctx.notify(Apply(command))));
    }

    /// After a change: drop out of the registry when final, re-arm the timeout otherwise.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        match &self.record {
            Some(r) if r.status.is_final() => {
                if let Some(handle) = self.timeout.take() {
                    ctx.cancel_future(handle);
                }
                // Once no one holds its address, the actor stops for good.
                self.registry.forget(self.id);
            }
            Some(_) => self.schedule_timeout(ctx),
            None => self.registry.forget(self.id),
        }
    }
}

impl Actor for OrderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let journal = self.deps.journal.clone();
        let route = self.registry.inner.route.get().cloned();
        let id = self.id;
        // Nothing else is handled until the order is loaded. In a cluster, an actor
        // (re)started on a node that does not own the order's region (it gave the region
        // up meanwhile) stops at once: the order is another node's.
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(async move {
                if let Some(route) = route {
                    if !route.here(id).await.unwrap_or(false) {
                        return None;
                    }
                }
                Some(journal.load(id).await)
            })
            .map(|loaded, act, ctx| {
                let Some(loaded) = loaded else {
                    act.registry.forget(act.id);
                    return;
                };
                match loaded {
                    Ok(record) => {
                        if let Some(r) = record
                            .as_ref()
                            .filter(|r| r.status == OrderStatus::Dispatching)
                        {
                            dispatch(&act.deps, r);
                        }
                        act.record = record;
                    }
                    Err(e) => {
                        tracing::error!(order_id = %act.id, error = %e, "order actor: load failed");
                        act.record = None;
                    }
                }
                act.settle(ctx);
            }),
        );
    }
}

impl Supervised for OrderActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!(order_id = %self.id, "order actor restarting");
        self.record = None;
        self.timeout = None;
    }
}

/// What a command journals: the event, who did it, and a note to keep with it.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    event: OrderEvent,
    actor: Option<Uuid>,
    cancel_reason: Option<CancelReason>,
    note: Option<String>,
}

/// Checks who may do what, then the state machine; returns what to journal.
fn plan(
    record: &OrderRecord,
    command: &Command,
    locked_until: Option<Instant>,
) -> Result<Planned, OrderError> {
    let rider_only = |rider_id: Uuid| {
        if record.rider_id == Some(rider_id) {
            Ok(())
        } else {
            Err(OrderError::Forbidden)
        }
    };
    let (event, actor) = match command {
        Command::Dispatch => (OrderEvent::Dispatch, None),
        Command::Assign { rider_id, by } => (
            OrderEvent::Assign {
                rider_id: *rider_id,
            },
            by.or(Some(*rider_id)),
        ),
        Command::PickUp { rider_id } => {
            rider_only(*rider_id)?;
            (OrderEvent::PickUp, Some(*rider_id))
        }
        Command::Deliver { rider_id, code } => {
            rider_only(*rider_id)?;
            transition(record.status, OrderEvent::Deliver)?;
            if let Some(until) = locked_until.filter(|u| *u > Instant::now()) {
                return Err(OrderError::RateLimited(
                    until.duration_since(Instant::now()).as_secs().max(1),
                ));
            }
            if !constant_time_eq(code.trim().as_bytes(), record.delivery_code.as_bytes()) {
                return Err(OrderError::InvalidCode);
            }
            (OrderEvent::Deliver, Some(*rider_id))
        }
        Command::Cancel { by, .. } => (OrderEvent::Cancel, Some(*by)),
        Command::Fail => (OrderEvent::Fail, None),
        // Journaled as the act of the rider who let it lapse: the matcher keeps him away
        // from this order from then on.
        Command::PickupTimeout => (OrderEvent::PickupTimeout, record.rider_id),
        Command::AwaitPrescription => (OrderEvent::AwaitPrescription, None),
        Command::AwaitPayment => (OrderEvent::AwaitPayment, None),
        Command::Approve { by } => (
            OrderEvent::Approve {
                payment_due: record.payment_method == PaymentMethod::Online,
            },
            Some(*by),
        ),
        Command::Reject { by, .. } => (OrderEvent::Reject, Some(*by)),
        Command::ReviewTimeout => (OrderEvent::ReviewTimeout, None),
        Command::PaymentSucceeded => (OrderEvent::PaymentSucceeded, None),
        Command::PaymentFailed => (OrderEvent::PaymentFailed, None),
        Command::PaymentTimeout => (OrderEvent::PaymentTimeout, None),
    };
    transition(record.status, event)?;
    let admin = matches!(command, Command::Cancel { admin: true, .. });
    let note = match command {
        Command::Reject { reason, .. } => Some(reason.clone()),
        _ => None,
    };
    Ok(Planned {
        event,
        actor,
        cancel_reason: CancelReason::of(event, admin),
        note,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Journals the change, then announces it and settles stock.
async fn execute(
    deps: Arc<OrderDeps>,
    record: OrderRecord,
    planned: Planned,
) -> Result<OrderRecord, OrderError> {
    let Planned {
        event,
        actor,
        cancel_reason,
        note,
    } = planned;
    let to = transition(record.status, event)?;
    let payment = payment_after(
        record.payment_method,
        record.payment_status,
        PaymentEvent::Order(event),
    );
    let payment_moved = (payment != record.payment_status).then_some(payment);
    let rider_id = match event {
        OrderEvent::Assign { rider_id } => Some(rider_id),
        OrderEvent::PickupTimeout => None,
        _ => record.rider_id,
    };
    let at_ms = now_ms();
    let version = deps
        .journal
        .append(JournalEntry {
            order_id: record.id,
            expected_version: record.version,
            from: record.status,
            to,
            event: event.name(),
            actor_id: actor,
            rider_id,
            at_ms,
            payment: payment_moved,
            cancel_reason,
            note,
        })
        .await?
        .ok_or(OrderError::Stale)?;
    let next = OrderRecord {
        status: to,
        version,
        rider_id,
        status_since_ms: at_ms,
        payment_status: payment,
        cancel_reason: cancel_reason.or(record.cancel_reason),
        ..record.clone()
    };
    // Stock follows the journal: pick-up takes the units off the shelf, cancel and failure
    // put them back. A failure here is repaired by start-up reconciliation.
    let stock = match to {
        OrderStatus::PickedUp => Some(deps.inventory.commit(record.id, record.pharmacy_id).await),
        OrderStatus::Cancelled | OrderStatus::Failed => {
            Some(deps.inventory.release(record.id, record.pharmacy_id).await)
        }
        _ => None,
    };
    match to {
        OrderStatus::Dispatching => {
            if let (OrderEvent::PickupTimeout, Some(matcher)) = (event, &deps.matcher) {
                // The rider hears it as a cancellation of his order.
                matcher.withdraw(crate::matcher::Withdraw {
                    order_id: record.id,
                    rider: record.rider_id,
                });
            }
            dispatch(&deps, &next)
        }
        OrderStatus::Cancelled | OrderStatus::Failed => {
            if let Some(matcher) = &deps.matcher {
                matcher.withdraw(crate::matcher::Withdraw {
                    order_id: record.id,
                    rider: rider_id,
                });
            }
        }
        _ => {}
    }
    if let Some(Err(e)) = stock {
        tracing::error!(order_id = %record.id, error = %e, "stock settlement failed; start-up reconciliation will repair it");
    }
    let events = announcements(&record, &next, at_ms);
    crate::outbox::announce(&*deps.bus, &*deps.journal, record.id, version, events).await;
    Ok(next)
}

/// The events announcing the change from `before` to `after` (journal entry
/// `after.version`): the order event, and a `payment.*` event when the payment moved.
/// The relay builds the same list from the journal, with the same ids.
pub fn announcements(before: &OrderRecord, after: &OrderRecord, at_ms: i64) -> Vec<Event> {
    let base = Event {
        id: crate::ports::order_event_id(after.id, after.version),
        kind: event_kind(after.status),
        order_id: Some(after.id),
        customer_id: Some(after.customer_id),
        rider_id: after.rider_id,
        pharmacy_id: Some(after.pharmacy_id),
        from_status: Some(before.status),
        to_status: Some(after.status),
        at_ms,
        payment: None,
        cancel_reason: (after.status == OrderStatus::Cancelled)
            .then_some(after.cancel_reason)
            .flatten(),
    };
    let mut events = Vec::with_capacity(2);
    if before.status != after.status {
        events.push(base.clone());
    }
    if after.payment_status != before.payment_status {
        if let Some(kind) = EventKind::of_payment(after.payment_status) {
            events.push(Event {
                id: crate::ports::payment_event_id(after.id, after.version),
                kind,
                payment: Some(after.payment_status),
                ..base
            });
        }
    }
    events
}

impl Handler<Apply> for OrderActor {
    type Result = AtomicResponse<Self, Result<OrderRecord, OrderError>>;

    fn handle(&mut self, Apply(command): Apply, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(record) = self.record.clone() else {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(OrderError::NotFound))));
        };
        let stale_timer = match command {
            Command::Fail => !matches!(
                record.status,
                OrderStatus::Confirmed | OrderStatus::Dispatching
            ),
            Command::PickupTimeout => record.status != OrderStatus::Assigned,
            Command::ReviewTimeout => record.status != OrderStatus::AwaitingPrescription,
            Command::PaymentTimeout => record.status != OrderStatus::AwaitingPayment,
            _ => false,
        };
        if stale_timer {
            // The order moved on.
            return AtomicResponse::new(Box::pin(actix::fut::ready(Ok(record))));
        }
        let planned = plan(&record, &command, self.locked_until);
        let deps = self.deps.clone();
        let journal = deps.journal.clone();
        let fut: BoxFuture<'static, (Result<OrderRecord, OrderError>, Option<i32>)> = match planned
        {
            Err(OrderError::InvalidCode) => {
                // Count the wrong code durably, then refuse.
                let failures = record.code_failures + 1;
                let id = record.id;
                Box::pin(async move {
                    if let Err(e) = journal.set_code_failures(id, failures).await {
                        tracing::error!(order_id = %id, error = %e, "could not count a wrong code");
                    }
                    (Err(OrderError::InvalidCode), Some(failures))
                })
            }
            Err(e) => Box::pin(async move { (Err(e), None) }),
            Ok(planned) => Box::pin(async move { (execute(deps, record, planned).await, None) }),
        };
        AtomicResponse::new(Box::pin(actix::fut::wrap_future::<_, Self>(fut).map(
            |(result, failures), act, ctx| {
                if let (Some(failures), Some(record)) = (failures, act.record.as_mut()) {
                    record.code_failures = failures;
                    if failures >= MAX_CODE_FAILURES {
                        act.locked_until = Some(Instant::now() + CODE_LOCKOUT);
                    }
                }
                match &result {
                    Ok(next) => {
                        act.record = Some(next.clone());
                        act.settle(ctx);
                    }
                    Err(OrderError::Stale) | Err(OrderError::Storage(_)) => {
                        // Our copy may be behind storage: restart and reload.
                        ctx.stop();
                    }
                    Err(_) => {}
                }
                result
            },
        )))
    }
}

impl Handler<Get> for OrderActor {
    type Result = Option<OrderRecord>;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> Option<OrderRecord> {
        self.record.clone()
    }
}

impl Handler<InjectFault> for OrderActor {
    type Result = ();
    fn handle(&mut self, _: InjectFault, ctx: &mut Context<Self>) {
        tracing::warn!(order_id = %self.id, "order actor: fault injected");
        ctx.stop();
    }
}

/// Where an order's actor runs in a cluster (issue 16): on the node owning the order's
/// region, reached from the others through this route.
pub trait OrderRoute: Send + Sync + 'static {
    /// Whether this node runs the order's actor now (it owns the order's region).
    fn here(&self, id: Uuid) -> BoxFuture<'static, Result<bool, OrderError>>;
    /// Sends the command to the node that does.
    fn forward(
        &self,
        id: Uuid,
        command: Command,
    ) -> BoxFuture<'static, Result<OrderRecord, OrderError>>;
    /// Of these active orders, the ones whose actors run on this node.
    fn mine(&self, ids: Vec<Uuid>) -> BoxFuture<'static, Vec<Uuid>>;
}

/// Stops an order actor: this node no longer runs it.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
struct Retire;

impl Handler<Retire> for OrderActor {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timeout.take() {
            ctx.cancel_future(handle);
        }
        self.record = None;
        ctx.stop();
    }
}

struct RegistryInner {
    /// Set in a cluster: how to reach the node running order actors when it is not this one.
    route: std::sync::OnceLock<Arc<dyn OrderRoute>>,
    actors: Mutex<HashMap<Uuid, Addr<OrderActor>>>,
    arbiters: Vec<ArbiterHandle>,
    next: std::sync::atomic::AtomicUsize,
    deps: Arc<OrderDeps>,
}

impl Drop for RegistryInner {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

/// Active orders by id; starts their supervised actors. Cheap to clone.
#[derive(Clone)]
pub struct OrderRegistry {
    inner: Arc<RegistryInner>,
}

impl OrderRegistry {
    /// Starts `arbiters` threads to run order actors on. Must be called inside a running
    /// actix `System`.
    pub fn new(deps: OrderDeps, arbiters: usize) -> Self {
        let arbiters = (0..arbiters.max(1))
            .map(|_| Arbiter::new().handle())
            .collect();
        Self {
            inner: Arc::new(RegistryInner {
                route: std::sync::OnceLock::new(),
                actors: Mutex::new(HashMap::new()),
                arbiters,
                next: std::sync::atomic::AtomicUsize::new(0),
                deps: Arc::new(deps),
            }),
        }
    }

    fn actors(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Addr<OrderActor>>> {
        self.inner
            .actors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The actor of an active order, started (from the journal) if it is not running.
    pub fn get_or_start(&self, id: Uuid) -> Addr<OrderActor> {
        let mut actors = self.actors();
        if let Some(addr) = actors.get(&id) {
            return addr.clone();
        }
        let n = self
            .inner
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let arbiter = &self.inner.arbiters[n % self.inner.arbiters.len()];
        let deps = self.inner.deps.clone();
        let registry = self.clone();
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| OrderActor {
            id,
            deps,
            registry,
            record: None,
            timeout: None,
            locked_until: None,
        });
        actors.insert(id, addr.clone());
        addr
    }

    /// The actor of an order if it is running (active orders only).
    pub fn get(&self, id: Uuid) -> Option<Addr<OrderActor>> {
        self.actors().get(&id).cloned()
    }

    /// How many order actors are running.
    pub fn len(&self) -> usize {
        self.actors().len()
    }

    pub fn is_empty(&self) -> bool {
        self.actors().is_empty()
    }

    fn forget(&self, id: Uuid) {
        self.actors().remove(&id);
    }

    /// In a cluster: commands for orders another node runs go through `route`. Set once,
    /// at start-up.
    pub fn set_route(&self, route: Arc<dyn OrderRoute>) {
        let _ = self.inner.route.set(route);
    }

    /// The orders whose actors run here.
    pub fn running(&self) -> Vec<Uuid> {
        self.actors().keys().copied().collect()
    }

    /// Stops these orders' actors (this node gave their region up); returns how many ran.
    pub fn retire(&self, ids: &[Uuid]) -> usize {
        let actors: Vec<Addr<OrderActor>> = {
            let mut running = self.actors();
            ids.iter().filter_map(|id| running.remove(id)).collect()
        };
        for actor in &actors {
            actor.do_send(Retire);
        }
        actors.len()
    }

    /// Sends a command to an order's actor (starting it if needed), on whichever node runs
    /// it.
    pub async fn apply(&self, id: Uuid, command: Command) -> Result<OrderRecord, OrderError> {
        if let Some(route) = self.inner.route.get() {
            if !route.here(id).await? {
                return route.forward(id, command).await;
            }
        }
        self.apply_here(id, command).await
    }

    /// Sends a command to the order's actor on this node (from another node that found
    /// this one owning the order).
    pub async fn apply_here(&self, id: Uuid, command: Command) -> Result<OrderRecord, OrderError> {
        let addr = self.get_or_start(id);
        addr.send(Apply(command))
            .await
            .map_err(|e| OrderError::Storage(format!("order actor unavailable: {e}")))?
    }

    /// Starts an actor for every active order in the journal that runs here (in a cluster:
    /// of the regions this node owns) and has none; returns how many that is. Called at
    /// start-up, on taking a region over and periodically.
    pub async fn rehydrate(&self) -> Result<usize, JournalError> {
        let mut ids = self.inner.deps.journal.active_orders().await?;
        if let Some(route) = self.inner.route.get() {
            ids = route.mine(ids).await;
        }
        for id in &ids {
            self.get_or_start(*id);
        }
        Ok(ids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: OrderStatus, rider: Option<Uuid>) -> OrderRecord {
        let p = crate::geo::Point::new(0.0, 0.0).expect("point");
        OrderRecord {
            id: Uuid::now_v7(),
            status,
            customer_id: Uuid::now_v7(),
            pharmacy_id: Uuid::now_v7(),
            rider_id: rider,
            delivery_code: "4821".into(),
            code_failures: 0,
            version: 3,
            dispatch_deadline_ms: None,
            pickup: p,
            pharmacy_name: "P".into(),
            dropoff: p,
            confirmed_at_ms: 0,
            status_since_ms: 1_000,
            total_cents: 399,
            payment_method: PaymentMethod::Cod,
            payment_status: crate::model::PaymentStatus::Pending,
            cancel_reason: None,
        }
    }

    const TIMEOUTS: Timeouts = Timeouts {
        dispatch: Duration::from_secs(600),
        pickup: Duration::from_secs(1_800),
        review: Duration::from_secs(1_200),
        payment: Duration::from_secs(900),
    };

    #[test]
    fn each_waiting_status_has_its_timer() {
        let timers = |r: &OrderRecord| timer_of(r, TIMEOUTS);
        let mut r = record(OrderStatus::Dispatching, None);
        r.dispatch_deadline_ms = Some(601_000);
        assert_eq!(timers(&r), Some((601_000, Command::Fail)));
        // Back to dispatching an hour later: a fresh dispatch timeout from then.
        r.status_since_ms = 3_600_000;
        assert_eq!(timers(&r), Some((4_200_000, Command::Fail)));
        let r = record(OrderStatus::Assigned, Some(Uuid::now_v7()));
        assert_eq!(timers(&r), Some((1_801_000, Command::PickupTimeout)));
        let r = record(OrderStatus::AwaitingPrescription, None);
        assert_eq!(timers(&r), Some((1_201_000, Command::ReviewTimeout)));
        let r = record(OrderStatus::AwaitingPayment, None);
        assert_eq!(timers(&r), Some((901_000, Command::PaymentTimeout)));
        for status in [OrderStatus::PickedUp, OrderStatus::Delivered] {
            assert_eq!(timers(&record(status, None)), None);
        }
        // Extreme stored times saturate instead of wrapping.
        let mut r = record(OrderStatus::Assigned, None);
        r.status_since_ms = i64::MAX;
        assert_eq!(timers(&r).map(|t| t.0), Some(i64::MAX));
    }

    #[test]
    fn a_pickup_timeout_is_the_lapsed_riders_act_and_clears_him() {
        let rider = Uuid::now_v7();
        let r = record(OrderStatus::Assigned, Some(rider));
        let planned = plan(&r, &Command::PickupTimeout, None).expect("planned");
        assert_eq!(
            (planned.event, planned.actor),
            (OrderEvent::PickupTimeout, Some(rider))
        );
        let r = record(OrderStatus::PickedUp, Some(rider));
        assert!(plan(&r, &Command::PickupTimeout, None).is_err());
    }

    #[test]
    fn only_the_assigned_rider_moves_the_order_and_codes_are_checked() {
        let rider = Uuid::now_v7();
        let r = record(OrderStatus::Assigned, Some(rider));
        assert_eq!(
            plan(
                &r,
                &Command::PickUp {
                    rider_id: Uuid::now_v7()
                },
                None
            ),
            Err(OrderError::Forbidden)
        );
        assert!(plan(&r, &Command::PickUp { rider_id: rider }, None).is_ok());
        let r = record(OrderStatus::PickedUp, Some(rider));
        let wrong = Command::Deliver {
            rider_id: rider,
            code: "0000".into(),
        };
        assert_eq!(plan(&r, &wrong, None), Err(OrderError::InvalidCode));
        let right = Command::Deliver {
            rider_id: rider,
            code: "4821".into(),
        };
        assert!(plan(&r, &right, None).is_ok());
        let locked = Some(Instant::now() + Duration::from_secs(30));
        assert!(matches!(
            plan(&r, &right, locked),
            Err(OrderError::RateLimited(_))
        ));
        // A code for an order not yet picked up is a conflict, not a code check.
        let r = record(OrderStatus::Assigned, Some(rider));
        assert!(matches!(
            plan(&r, &right, None),
            Err(OrderError::Conflict(_))
        ));
    }

    #[test]
    fn approval_goes_on_to_payment_for_online_orders_and_rejection_says_why() {
        let pharmacist = Uuid::now_v7();
        let mut r = record(OrderStatus::AwaitingPrescription, None);
        let approve = Command::Approve { by: pharmacist };
        assert_eq!(
            plan(&r, &approve, None).map(|p| p.event),
            Ok(OrderEvent::Approve { payment_due: false })
        );
        r.payment_method = PaymentMethod::Online;
        assert_eq!(
            plan(&r, &approve, None).map(|p| p.event),
            Ok(OrderEvent::Approve { payment_due: true })
        );
        let reject = Command::Reject {
            by: pharmacist,
            reason: "illegible".into(),
        };
        let planned = plan(&r, &reject, None).expect("planned");
        assert_eq!(
            planned.cancel_reason,
            Some(CancelReason::PrescriptionRejected)
        );
        assert_eq!(planned.note.as_deref(), Some("illegible"));
        // Nothing to review once dispatching.
        let r = record(OrderStatus::Dispatching, None);
        assert!(matches!(
            plan(&r, &approve, None),
            Err(OrderError::Conflict(_))
        ));
        let admin_cancel = Command::Cancel {
            by: pharmacist,
            admin: true,
        };
        assert_eq!(
            plan(&r, &admin_cancel, None).map(|p| p.cancel_reason),
            Ok(Some(CancelReason::Admin))
        );
    }

    #[test]
    fn a_change_that_moves_the_payment_announces_it_too() {
        let mut before = record(OrderStatus::AwaitingPayment, None);
        before.payment_method = PaymentMethod::Online;
        let mut after = before.clone();
        after.status = OrderStatus::Dispatching;
        after.version = 4;
        after.payment_status = crate::model::PaymentStatus::Paid;
        let events = announcements(&before, &after, 5);
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::OrderDispatching, EventKind::PaymentSucceeded]
        );
        assert_ne!(events[0].id, events[1].id);
        assert_eq!(events[1].payment, Some(crate::model::PaymentStatus::Paid));
        // A payment-only change (a refund) announces the payment alone.
        let mut refunded = after.clone();
        refunded.payment_status = crate::model::PaymentStatus::Refunded;
        let kinds: Vec<EventKind> = announcements(&after, &refunded, 6)
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [EventKind::PaymentRefunded]);
    }
}
