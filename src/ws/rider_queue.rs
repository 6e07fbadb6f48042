//! The rider socket's queue to the session: every message a rider sends that needs the
//! session waits here, in the order sent, while one request is out. It is bounded for
//! every kind of frame, so a flood costs the server one small queue per socket, never a
//! task, a mailbox entry or a storage read per frame: past [`MAX_QUEUED_FIXES`] the oldest
//! fixes are shed, past the limit any other message is.

use std::collections::VecDeque;

use medify_actors::model::Fix;
use medify_actors::rider::{ReportStatus, RespondToOffer};

/// Fixes kept while the session is busy; beyond this the oldest are shed, so a slow session
/// never makes a socket buffer without bound.
pub const MAX_QUEUED_FIXES: usize = 100;

/// A rider message on its way to the session.
pub enum Pending {
    /// Consecutive location frames travel together: `(index in their frame, fix)`.
    Fixes(Vec<(usize, Fix)>),
    Availability(bool),
    Offer(RespondToOffer),
    Status(ReportStatus),
}

impl Pending {
    /// The `kind` label of a shed message.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Fixes(_) => "location",
            Self::Availability(_) => "availability",
            Self::Offer(_) => "offer_response",
            Self::Status(_) => "order_status",
        }
    }
}

/// What [`RiderQueue::push`] had to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// Nothing.
    None,
    /// This many of the oldest fixes.
    Fixes(usize),
    /// The message pushed, of this kind.
    Message(&'static str),
}

/// The queue; see the module comment.
pub struct RiderQueue {
    pending: VecDeque<Pending>,
    /// Fixes in `pending`, all blocks together.
    fixes: usize,
    /// Messages other than fixes `pending` may hold.
    limit: usize,
}

impl RiderQueue {
    pub fn new(limit: usize) -> Self {
        Self {
            pending: VecDeque::new(),
            fixes: 0,
            limit,
        }
    }

    /// Queues `message`, shedding as the bounds say.
    pub fn push(&mut self, message: Pending) -> Shed {
        // Room for one to start with (a `VecDeque` would take four, 256 bytes, and keep them
        // for the socket's life): most sockets never have more than one message waiting.
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(1);
        }
        match message {
            Pending::Fixes(fixes) => {
                self.fixes += fixes.len();
                match self.pending.back_mut() {
                    Some(Pending::Fixes(tail)) => tail.extend(fixes),
                    _ => self.pending.push_back(Pending::Fixes(fixes)),
                }
                self.shed_fixes()
            }
            other => {
                let blocks = self
                    .pending
                    .iter()
                    .filter(|m| matches!(m, Pending::Fixes(_)));
                let queued = self.pending.len() - blocks.count();
                if queued >= self.limit {
                    return Shed::Message(other.kind());
                }
                self.pending.push_back(other);
                Shed::None
            }
        }
    }

    /// The next message to send, oldest first.
    pub fn pop(&mut self) -> Option<Pending> {
        let next = self.pending.pop_front()?;
        if let Pending::Fixes(fixes) = &next {
            self.fixes = self.fixes.saturating_sub(fixes.len());
        }
        Some(next)
    }

    /// Drops the oldest queued fixes beyond [`MAX_QUEUED_FIXES`].
    fn shed_fixes(&mut self) -> Shed {
        let shed = self.fixes.saturating_sub(MAX_QUEUED_FIXES);
        if shed == 0 {
            return Shed::None;
        }
        self.fixes -= shed;
        let mut left = shed;
        for message in self.pending.iter_mut() {
            if let Pending::Fixes(fixes) = message {
                let n = left.min(fixes.len());
                fixes.drain(..n);
                left -= n;
                if left == 0 {
                    break;
                }
            }
        }
        self.pending
            .retain(|m| !matches!(m, Pending::Fixes(f) if f.is_empty()));
        Shed::Fixes(shed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medify_actors::geo::Point;
    use uuid::Uuid;

    fn fixes(first_ts: i64, n: usize) -> Pending {
        Pending::Fixes(
            (0..n)
                .map(|i| {
                    let fix = Fix {
                        at: Point::new(12.97, 77.59).expect("valid"),
                        ts_ms: first_ts + i as i64,
                        accuracy_m: None,
                        speed_mps: None,
                        heading: None,
                    };
                    (0, fix)
                })
                .collect(),
        )
    }

    fn status() -> Pending {
        Pending::Status(ReportStatus {
            order_id: Uuid::now_v7(),
            status: "picked_up".into(),
            code: None,
        })
    }

    fn ts_of(p: &Pending) -> Vec<i64> {
        match p {
            Pending::Fixes(f) => f.iter().map(|(_, f)| f.ts_ms).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn messages_keep_their_order_and_fixes_travel_together() {
        let mut q = RiderQueue::new(4);
        assert_eq!(q.push(fixes(0, 2)), Shed::None);
        assert_eq!(q.push(fixes(2, 1)), Shed::None);
        assert_eq!(q.push(Pending::Availability(true)), Shed::None);
        assert_eq!(q.push(fixes(3, 1)), Shed::None);
        assert_eq!(ts_of(&q.pop().expect("fixes")), vec![0, 1, 2]);
        assert!(matches!(q.pop(), Some(Pending::Availability(true))));
        assert_eq!(ts_of(&q.pop().expect("fixes")), vec![3]);
        assert!(q.pop().is_none());
    }

    #[test]
    fn other_messages_past_the_limit_are_shed() {
        let mut q = RiderQueue::new(3);
        for _ in 0..3 {
            assert_eq!(q.push(status()), Shed::None);
        }
        // Fixes do not count against the limit of other messages.
        assert_eq!(q.push(fixes(0, 10)), Shed::None);
        assert_eq!(q.push(status()), Shed::Message("order_status"));
        assert_eq!(
            q.push(Pending::Availability(false)),
            Shed::Message("availability")
        );
        q.pop();
        assert_eq!(q.push(status()), Shed::None, "room again after a send");
    }

    #[test]
    fn the_oldest_fixes_are_shed_past_the_bound() {
        let mut q = RiderQueue::new(8);
        assert_eq!(q.push(fixes(0, 60)), Shed::None);
        assert_eq!(q.push(status()), Shed::None);
        assert_eq!(q.push(fixes(60, 60)), Shed::Fixes(20));
        let first = q.pop().expect("fixes");
        assert_eq!(ts_of(&first).first(), Some(&20), "the oldest went first");
        assert_eq!(ts_of(&first).len(), 40);
        assert!(matches!(q.pop(), Some(Pending::Status(_))));
        assert_eq!(ts_of(&q.pop().expect("fixes")).len(), 60);
        // A block emptied by shedding disappears.
        let mut q = RiderQueue::new(8);
        q.push(fixes(0, 50));
        q.push(status());
        assert_eq!(q.push(fixes(50, 150)), Shed::Fixes(100));
        assert!(matches!(q.pop(), Some(Pending::Status(_))));
        assert_eq!(
            ts_of(&q.pop().expect("fixes")),
            (100..200).collect::<Vec<_>>()
        );
    }
}
