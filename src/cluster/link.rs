//! Node-to-node messages (issue 16): how the nodes that hold riders' sockets and the nodes
//! that own regions ([`super::dispatch`]) talk.
//!
//! Each node subscribes to its own Redis pub/sub channel `node:<id>`; a message names its
//! sender and, when it wants an answer, a request id the answer comes back with. Pub/sub
//! keeps the hop cheap (one PUBLISH, no storage) and loses messages only when a node or
//! Redis goes away; each kind is chosen to survive that:
//! - riders' reports (phase and position) go to every node owning a region; they are the
//!   whole state each time, batched every [`BATCH_EVERY`], and every node sends all of its
//!   riders again every [`RESYNC_EVERY`] and whenever a region moves: a lost report is
//!   replaced by the next;
//! - an offer is a request: unanswered within `MEDIFY_CLUSTER_RPC_TIMEOUT_MS`, it counts as
//!   declined and the order waits for the next batch; an `offer_expired` or
//!   `order_cancelled` that is lost is repaired by the rider's next report (a rider who
//!   reports an offer the matcher does not hold is told it is gone);
//! - an answer to an offer, a command for an order (assign, pick-up, delivery, cancel,
//!   payments) go to the owner of the order's region ([`Places`]); the dispatch controls
//!   and counts to every owner. They are requests: unanswered in time they fail with
//!   503 `unavailable` (HTTP) or the `unavailable` error (rider socket) and the client
//!   retries; what was decided is in the order journal, which is the record that must not
//!   be lost.
//!
//! Each owner keeps a rider directory: for every rider of another node,
//! which node holds his socket and when it last heard of him. A rider is reachable through
//! the last node that reported him connected; a node's report of a rider it has lost
//! (disconnected, gone) is ignored once another node has him; riders of a node that left
//! the membership, or not reported for [`FORGET_AFTER`], are forgotten.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use actix::MailboxError;
use futures_util::StreamExt;
use medify_actors::matcher::{
    Answer, AnswerError, Answered, AssignOutcome, ManualOffer, ManualOfferError, Matcher,
    MatcherRoute, MatcherStats, RemoteRiders, RiderInbox, RiderReport, ToRider,
};
use medify_actors::model::RiderPhase;
use medify_actors::order::{Command, OrderError, OrderRegistry, OrderRoute};
use medify_actors::ports::{BoxFuture, OrderRecord};
use medify_actors::protocol::OfferInfo;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::places::Places;
use super::seat::Seat;
use crate::redis::Redis;

/// Riders' reports wait at most this long to travel together.
pub const BATCH_EVERY: Duration = Duration::from_millis(50);
/// Every node sends all of its riders' reports this often.
pub const RESYNC_EVERY: Duration = Duration::from_secs(5);
/// A rider of another node not reported for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(20);
/// Reports per message in a full resend.
const REPORTS_PER_MESSAGE: usize = 500;
/// Reports waiting to be batched; beyond it a report is dropped (the resend repairs it).
const REPORT_QUEUE: usize = 65_536;

/// One message between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    /// Non-zero when the sender waits for a [`Body::Reply`] with this id.
    #[serde(default)]
    id: u64,
    body: Body,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Body {
    /// To the nodes owning regions: the sender's riders, as they are now.
    Riders {
        riders: Vec<RiderReport>,
    },
    RiderGone {
        rider: Uuid,
    },
    /// From an owner, to the node holding the rider's socket.
    ToRider {
        rider: Uuid,
        msg: ToRider,
    },
    Answer {
        msg: Answer,
    },
    Outcome {
        msg: AssignOutcome,
    },
    ManualOffer {
        msg: ManualOffer,
    },
    SetPaused {
        paused: bool,
    },
    Stats,
    Apply {
        order: Uuid,
        command: Command,
    },
    OpenOffer {
        rider: Uuid,
    },
    Reply {
        to: u64,
        reply: Reply,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
enum Reply {
    Taken {
        taken: bool,
    },
    Answer {
        result: Result<Answered, AnswerError>,
    },
    ManualOffer {
        result: Result<(), ManualOfferError>,
    },
    Done,
    Stats {
        stats: MatcherStats,
        paused: bool,
    },
    Order {
        result: Result<OrderRecord, OrderError>,
    },
    Offer {
        offer: Option<OfferInfo>,
    },
    /// The receiver does not own the order's region (it moved meanwhile).
    NotHere,
}

/// Where the rider directory says a rider of another node is.
struct Known {
    node: String,
    heard: Instant,
}

/// This node's end of the links to the others; cheap to clone.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    node_id: String,
    seat: Seat,
    places: Places,
    timeout: Duration,
    matcher: Matcher,
    orders: OrderRegistry,
    outbox: mpsc::UnboundedSender<(Vec<String>, Envelope)>,
    reports: mpsc::Sender<RiderReport>,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    /// The rider directory, on a node owning a region.
    directory: Mutex<HashMap<Uuid, Known>>,
    /// One handle per other node, shared by its riders' inboxes.
    nodes: Mutex<HashMap<String, Arc<NodeRiders>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn channel(redis: &Redis, node: &str) -> String {
    redis.key(&format!("node:{node}"))
}

impl Link {
    /// Starts this node's listener and senders, and routes `matcher` and `orders` through
    /// the link to the other regions' owners.
    pub fn start(
        redis: Redis,
        (node_id, seat, places): (&str, Seat, Places),
        timeout: Duration,
        matcher: Matcher,
        orders: OrderRegistry,
    ) -> Self {
        let (outbox, outgoing) = mpsc::unbounded_channel();
        let (reports, reported) = mpsc::channel(REPORT_QUEUE);
        let link = Self {
            inner: Arc::new(Inner {
                redis: redis.clone(),
                node_id: node_id.to_owned(),
                seat,
                places,
                timeout,
                matcher: matcher.clone(),
                orders: orders.clone(),
                outbox,
                reports,
                next_id: AtomicU64::new(1),
                waiting: Mutex::new(HashMap::new()),
                directory: Mutex::new(HashMap::new()),
                nodes: Mutex::new(HashMap::new()),
            }),
        };
        actix_web::rt::spawn(publish(redis, outgoing));
        actix_web::rt::spawn(batch_reports(link.clone(), reported));
        actix_web::rt::spawn(listen(Arc::downgrade(&link.inner)));
        let route = Arc::new(Route(link.clone()));
        matcher.set_route(route.clone());
        orders.set_route(route);
        link
    }

    fn send(&self, node: &str, id: u64, body: Body) {
        self.send_to(vec![node.to_owned()], id, body);
    }

    fn send_to(&self, nodes: Vec<String>, id: u64, body: Body) {
        let envelope = Envelope {
            from: self.inner.node_id.clone(),
            id,
            body,
        };
        let _ = self.inner.outbox.send((nodes, envelope));
    }

    /// Sends `body` to every other node owning a region (nothing when there is none).
    fn tell_owners(&self, body: Body) {
        let owners = self.inner.seat.other_owners();
        if !owners.is_empty() {
            self.send_to(owners, 0, body);
        }
    }

    /// Asks `node` and waits for the reply, at most the RPC timeout.
    async fn ask(&self, node: &str, body: Body) -> Option<Reply> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.waiting).insert(id, tx);
        self.send(node, id, body);
        let reply = tokio::time::timeout(self.inner.timeout, rx).await;
        lock(&self.inner.waiting).remove(&id);
        reply.ok().and_then(Result::ok)
    }

    /// The node owning an order's region: `Ok(None)` for an order that does not exist,
    /// `Err` when the order cannot be read or its region has had no owner for the whole
    /// RPC timeout (a new region is taken, or a dead owner's taken over, meanwhile).
    async fn owner_of(&self, order: Uuid) -> Result<Option<String>, ()> {
        match self.inner.places.region_of(order).await {
            Ok(Some(region)) => {
                let deadline = Instant::now() + self.inner.timeout;
                loop {
                    if let Some(node) = self.inner.seat.holder(region) {
                        return Ok(Some(node));
                    }
                    // Not in this node's last read: the lease itself may be newer.
                    if let Ok(Some(node)) = self.inner.places.owner_now(region).await {
                        return Ok(Some(node));
                    }
                    if Instant::now() >= deadline {
                        return Err(());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::debug!(%order, error = %e, "the order's region could not be read");
                Err(())
            }
        }
    }

    /// Whether this node owns the order's region (`Err` while that cannot be read).
    async fn owns(&self, order: Uuid) -> Result<bool, ()> {
        match self.inner.places.region_of(order).await {
            Ok(Some(region)) => Ok(self.inner.seat.lease(region).is_some()),
            Ok(None) => Ok(false),
            Err(_) => Err(()),
        }
    }

    /// Asks the other owner of an order's region. `Ok(None)`: no other node owns it (the
    /// order does not exist, or this node owns it).
    async fn ask_owner(&self, order: Uuid, body: Body) -> Result<Option<Reply>, ()> {
        match self.owner_of(order).await? {
            Some(node) if node != self.inner.node_id => {
                self.ask(&node, body).await.map(Some).ok_or(())
            }
            _ => Ok(None),
        }
    }

    /// Sends every rider of this node to the other owners, in chunks.
    pub fn resend_riders(&self) {
        if self.inner.seat.other_owners().is_empty() {
            return;
        }
        let reports = self.inner.matcher.local_reports();
        for chunk in reports.chunks(REPORTS_PER_MESSAGE) {
            self.tell_owners(Body::Riders {
                riders: chunk.to_vec(),
            });
        }
    }

    /// On a node owning a region: forgets riders of nodes not in `live`, and riders no
    /// report has named for [`FORGET_AFTER`].
    pub fn forget_lost_riders(&self, live: &[String]) {
        let lost: Vec<Uuid> = {
            let mut directory = lock(&self.inner.directory);
            let lost: Vec<Uuid> = directory
                .iter()
                .filter(|(_, k)| !live.contains(&k.node) || k.heard.elapsed() > FORGET_AFTER)
                .map(|(r, _)| *r)
                .collect();
            for rider in &lost {
                directory.remove(rider);
            }
            lost
        };
        for rider in lost {
            self.inner.matcher.remote_rider_gone(rider);
        }
    }

    /// This node owns no region any more: the directory goes with it.
    pub fn forget_directory(&self) {
        lock(&self.inner.directory).clear();
    }

    fn node_riders(&self, node: &str) -> Arc<NodeRiders> {
        lock(&self.inner.nodes)
            .entry(node.to_owned())
            .or_insert_with(|| {
                Arc::new(NodeRiders {
                    node: node.to_owned(),
                    link: Arc::downgrade(&self.inner),
                })
            })
            .clone()
    }

    /// A report from `from` about one of its riders, on a node owning a region.
    async fn take_report(&self, from: &str, report: RiderReport) {
        {
            let mut directory = lock(&self.inner.directory);
            match directory.get_mut(&report.rider) {
                // Another node has him now; this one is reporting a session it lost.
                Some(k) if k.node != from && !report.connected => return,
                Some(k) => {
                    k.node = from.to_owned();
                    k.heard = Instant::now();
                }
                None => {
                    directory.insert(
                        report.rider,
                        Known {
                            node: from.to_owned(),
                            heard: Instant::now(),
                        },
                    );
                }
            }
        }
        // An offer for an order not matched here is checked by its region's owner; this
        // node repairs it only for a region it owns (the offer's maker is gone).
        let owned_elsewhere = match report.phase {
            RiderPhase::Offered { order, .. } if !self.inner.matcher.matches_here(order) => {
                self.owns(order).await != Ok(true)
            }
            _ => false,
        };
        let inbox = RiderInbox::remote(report.rider, self.node_riders(from));
        self.inner
            .matcher
            .remote_rider(report, inbox, owned_elsewhere);
    }

    fn take_gone(&self, from: &str, rider: Uuid) {
        {
            let mut directory = lock(&self.inner.directory);
            if directory.get(&rider).is_some_and(|k| k.node != from) {
                return;
            }
            directory.remove(&rider);
        }
        self.inner.matcher.remote_rider_gone(rider);
    }

    /// Handles one message from another node.
    async fn handle(&self, envelope: Envelope) {
        let Envelope { from, id, body } = envelope;
        let here = self.inner.seat.is_local();
        let inner = &self.inner;
        let reply = match body {
            Body::Reply { to, reply } => {
                if let Some(waiting) = lock(&inner.waiting).remove(&to) {
                    let _ = waiting.send(reply);
                }
                return;
            }
            Body::Riders { riders } if here => {
                for report in riders {
                    self.take_report(&from, report).await;
                }
                return;
            }
            Body::RiderGone { rider } if here => {
                self.take_gone(&from, rider);
                return;
            }
            Body::Riders { .. } | Body::RiderGone { .. } => return,
            Body::ToRider { rider, msg } => Reply::Taken {
                taken: inner.matcher.tell_local(rider, msg).await,
            },
            Body::Outcome { msg } => {
                inner.matcher.assign_outcome_here(msg);
                return;
            }
            Body::Answer { msg } => match inner.matcher.answer_here(msg).await {
                Ok(result) => Reply::Answer { result },
                Err(_) => Reply::NotHere,
            },
            Body::ManualOffer { msg } => match inner.matcher.manual_offer_here(msg).await {
                Ok(result) => Reply::ManualOffer { result },
                Err(_) => Reply::NotHere,
            },
            Body::SetPaused { paused } => match inner.matcher.set_paused_here(paused).await {
                Ok(()) => Reply::Done,
                Err(_) => Reply::NotHere,
            },
            Body::Stats => match inner.matcher.state_here().await {
                Ok((stats, paused)) => Reply::Stats { stats, paused },
                Err(_) => Reply::NotHere,
            },
            Body::Apply { order, command } => match self.owns(order).await {
                Ok(true) => Reply::Order {
                    result: inner.orders.apply_here(order, command).await,
                },
                _ => Reply::NotHere,
            },
            Body::OpenOffer { rider } => Reply::Offer {
                offer: inner.matcher.open_offer_here(rider).await,
            },
        };
        if id != 0 {
            self.send(&from, 0, Body::Reply { to: id, reply });
        }
    }
}

/// The riders of one other node, as an owner reaches them.
struct NodeRiders {
    node: String,
    link: Weak<Inner>,
}

impl RemoteRiders for NodeRiders {
    fn tell(&self, rider: Uuid, msg: ToRider) -> BoxFuture<'static, bool> {
        let Some(inner) = self.link.upgrade() else {
            return Box::pin(async { false });
        };
        let link = Link { inner };
        let node = self.node.clone();
        if matches!(msg, ToRider::Offer(_)) {
            Box::pin(async move {
                matches!(
                    link.ask(&node, Body::ToRider { rider, msg }).await,
                    Some(Reply::Taken { taken: true })
                )
            })
        } else {
            link.send(&node, 0, Body::ToRider { rider, msg });
            Box::pin(async { false })
        }
    }

    fn node(&self) -> &str {
        &self.node
    }
}

/// The matcher's and the order registry's way to the other regions' owners.
struct Route(Link);

impl MatcherRoute for Route {
    fn local(&self) -> bool {
        self.0.inner.seat.is_local()
    }

    fn rider(&self, report: RiderReport) {
        if self.0.inner.seat.other_owners().is_empty() {
            return;
        }
        if self.0.inner.reports.try_send(report).is_err() {
            tracing::debug!("rider report queue full: one report dropped until the resend");
        }
    }

    fn rider_gone(&self, rider: Uuid) {
        self.0.tell_owners(Body::RiderGone { rider });
    }

    fn answer(
        &self,
        msg: Answer,
    ) -> BoxFuture<'static, Result<Result<Answered, AnswerError>, MailboxError>> {
        let link = self.0.clone();
        Box::pin(async move {
            match link.ask_owner(msg.order_id, Body::Answer { msg }).await {
                Ok(Some(Reply::Answer { result })) => Ok(result),
                // Nobody else owns it: the order is not waiting for this rider.
                Ok(None) => Ok(Err(AnswerError::Closed)),
                _ => Err(MailboxError::Timeout),
            }
        })
    }

    fn assign_outcome(&self, msg: AssignOutcome) {
        let link = self.0.clone();
        actix_web::rt::spawn(async move {
            if let Ok(Some(node)) = link.owner_of(msg.order_id).await {
                if node != link.inner.node_id {
                    link.send(&node, 0, Body::Outcome { msg });
                }
            }
        });
    }

    fn manual_offer(
        &self,
        msg: ManualOffer,
    ) -> BoxFuture<'static, Result<Result<(), ManualOfferError>, MailboxError>> {
        let link = self.0.clone();
        Box::pin(async move {
            match link
                .ask_owner(msg.order_id, Body::ManualOffer { msg })
                .await
            {
                Ok(Some(Reply::ManualOffer { result })) => Ok(result),
                Ok(None) => Ok(Err(ManualOfferError::NotDispatching)),
                _ => Err(MailboxError::Timeout),
            }
        })
    }

    fn set_paused(&self, paused: bool) -> BoxFuture<'static, Result<(), MailboxError>> {
        let link = self.0.clone();
        Box::pin(async move {
            for node in link.inner.seat.other_owners() {
                match link.ask(&node, Body::SetPaused { paused }).await {
                    Some(Reply::Done) => {}
                    _ => return Err(MailboxError::Timeout),
                }
            }
            Ok(())
        })
    }

    fn open_offer(&self, rider: Uuid) -> BoxFuture<'static, Option<OfferInfo>> {
        let link = self.0.clone();
        Box::pin(async move {
            for node in link.inner.seat.other_owners() {
                if let Some(Reply::Offer { offer: Some(offer) }) =
                    link.ask(&node, Body::OpenOffer { rider }).await
                {
                    return Some(offer);
                }
            }
            None
        })
    }

    fn stats(&self) -> BoxFuture<'static, Result<(MatcherStats, bool), MailboxError>> {
        let link = self.0.clone();
        Box::pin(async move {
            let (mut total, mut paused) = (MatcherStats::default(), false);
            for node in link.inner.seat.other_owners() {
                let Some(Reply::Stats {
                    stats,
                    paused: held,
                }) = link.ask(&node, Body::Stats).await
                else {
                    return Err(MailboxError::Timeout);
                };
                total.add(stats);
                paused |= held;
            }
            Ok((total, paused))
        })
    }
}

impl OrderRoute for Route {
    fn here(&self, id: Uuid) -> BoxFuture<'static, Result<bool, OrderError>> {
        let link = self.0.clone();
        Box::pin(async move {
            match link.inner.places.region_of(id).await {
                Ok(Some(region)) => Ok(link.inner.seat.lease(region).is_some()),
                // No such order: the local actor answers not found.
                Ok(None) => Ok(true),
                Err(_) => Err(OrderError::Unavailable),
            }
        })
    }

    fn forward(
        &self,
        id: Uuid,
        command: Command,
    ) -> BoxFuture<'static, Result<OrderRecord, OrderError>> {
        let link = self.0.clone();
        Box::pin(async move {
            match link.owner_of(id).await {
                // The region had no owner a moment ago and this node has taken it.
                Ok(Some(node)) if node == link.inner.node_id => {
                    link.inner.orders.apply_here(id, command).await
                }
                Ok(Some(node)) => match link.ask(&node, Body::Apply { order: id, command }).await {
                    Some(Reply::Order { result }) => result,
                    _ => Err(OrderError::Unavailable),
                },
                Ok(None) => link.inner.orders.apply_here(id, command).await,
                Err(()) => Err(OrderError::Unavailable),
            }
        })
    }

    fn mine(&self, ids: Vec<Uuid>) -> BoxFuture<'static, Vec<Uuid>> {
        let link = self.0.clone();
        Box::pin(async move {
            let mut mine = Vec::new();
            for id in ids {
                if link.owns(id).await == Ok(true) {
                    mine.push(id);
                }
            }
            mine
        })
    }
}

/// Publishes outgoing messages in order, on the shared connection.
async fn publish(redis: Redis, mut outgoing: mpsc::UnboundedReceiver<(Vec<String>, Envelope)>) {
    while let Some((nodes, envelope)) = outgoing.recv().await {
        let Ok(payload) = serde_json::to_string(&envelope) else {
            continue;
        };
        for node in nodes {
            let sent = async {
                let mut conn = redis.connection().await?;
                redis::cmd("PUBLISH")
                    .arg(channel(&redis, &node))
                    .arg(&payload)
                    .query_async::<i64>(&mut conn)
                    .await
            };
            if let Err(e) = sent.await {
                tracing::debug!(%node, error = %e, "a message to another node was not sent");
            }
        }
    }
}

/// Collects riders' reports for [`BATCH_EVERY`] and sends them together, the last report
/// of each rider only. The task sleeps through the window, so a report only queues: no
/// wake-up per report.
async fn batch_reports(link: Link, mut reported: mpsc::Receiver<RiderReport>) {
    let mut batch: HashMap<Uuid, RiderReport> = HashMap::new();
    while let Some(first) = reported.recv().await {
        batch.insert(first.rider, first);
        tokio::time::sleep(BATCH_EVERY).await;
        while let Ok(report) = reported.try_recv() {
            batch.insert(report.rider, report);
            if batch.len() >= REPORTS_PER_MESSAGE {
                send_reports(&link, &mut batch);
            }
        }
        send_reports(&link, &mut batch);
    }
}

fn send_reports(link: &Link, batch: &mut HashMap<Uuid, RiderReport>) {
    if batch.is_empty() {
        return;
    }
    let riders: Vec<RiderReport> = batch.drain().map(|(_, r)| r).collect();
    link.tell_owners(Body::Riders { riders });
}

/// Follows this node's channel for the life of the process, resubscribing after any Redis
/// failure.
async fn listen(link: Weak<Inner>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(inner) = link.upgrade() else { return };
        let (redis, name) = (inner.redis.clone(), channel(&inner.redis, &inner.node_id));
        drop(inner);
        let mut subscribed = false;
        let followed = async {
            let mut pubsub = redis.client().get_async_pubsub().await?;
            pubsub.subscribe(&name).await?;
            subscribed = true;
            let mut stream = pubsub.on_message();
            while let Some(message) = stream.next().await {
                let Some(inner) = link.upgrade() else {
                    return Ok(());
                };
                let Ok(envelope) = message
                    .get_payload::<String>()
                    .map_err(|_| ())
                    .and_then(|p| serde_json::from_str::<Envelope>(&p).map_err(|_| ()))
                else {
                    tracing::debug!("undecodable message from another node");
                    continue;
                };
                let link = Link { inner };
                actix_web::rt::spawn(async move { link.handle(envelope).await });
            }
            Err::<(), redis::RedisError>(redis::RedisError::from((
                redis::ErrorKind::Io,
                "subscription ended",
            )))
        };
        let followed = followed.await;
        if subscribed {
            backoff = Duration::from_millis(100);
        }
        match followed {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "node link: Redis error; resubscribing");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
