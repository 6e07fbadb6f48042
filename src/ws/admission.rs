//! Admission of tracking sockets: how many each order and each user holds open, so one
//! client cannot open an unbounded number of watchers (each costs a socket, a slot and a
//! place in every fix's fan-out). A place is taken before the upgrade and given back when
//! the socket's [`Admission`] is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

#[derive(Default)]
struct Counts {
    per_order: HashMap<Uuid, u32>,
    per_user: HashMap<Uuid, u32>,
}

/// The open tracking sockets per order and per user. Cheap to clone.
#[derive(Clone)]
pub struct TrackAdmissions {
    counts: Arc<Mutex<Counts>>,
    per_order: u32,
    per_user: u32,
}

/// Why a socket was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    OrderFull,
    UserFull,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OrderFull => "too many tracking sockets are open on this order",
            Self::UserFull => "you have too many tracking sockets open",
        })
    }
}

/// One admitted socket's place; dropping it frees the place.
pub struct Admission {
    counts: Arc<Mutex<Counts>>,
    order: Uuid,
    user: Uuid,
}

fn decrement(map: &mut HashMap<Uuid, u32>, key: Uuid) {
    if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&key);
        }
    }
}

impl TrackAdmissions {
    pub fn new(per_order: u32, per_user: u32) -> Self {
        Self {
            counts: Arc::default(),
            per_order,
            per_user,
        }
    }

    /// Takes a place for `user` watching `order`, or says which limit is reached.
    pub fn admit(&self, order: Uuid, user: Uuid) -> Result<Admission, Refused> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.per_order.get(&order).copied().unwrap_or(0) >= self.per_order {
            return Err(Refused::OrderFull);
        }
        if counts.per_user.get(&user).copied().unwrap_or(0) >= self.per_user {
            return Err(Refused::UserFull);
        }
        *counts.per_order.entry(order).or_default() += 1;
        *counts.per_user.entry(user).or_default() += 1;
        Ok(Admission {
            counts: self.counts.clone(),
            order,
            user,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        decrement(&mut counts.per_order, self.order);
        decrement(&mut counts.per_user, self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_per_order_and_per_user_and_given_back() {
        let admissions = TrackAdmissions::new(2, 3);
        let (a, b, user, other) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let first = admissions.admit(a, user).expect("first");
        let _second = admissions.admit(a, other).expect("second");
        assert_eq!(admissions.admit(a, user).err(), Some(Refused::OrderFull));
        drop(first);
        let _third = admissions.admit(a, user).expect("a freed place");
        // The user holds a, b and c: a fourth order is refused for them alone.
        let _b1 = admissions.admit(b, user).expect("b");
        let c = Uuid::now_v7();
        let _b2 = admissions.admit(c, user).expect("c");
        assert_eq!(
            admissions.admit(Uuid::now_v7(), user).err(),
            Some(Refused::UserFull)
        );
        assert!(
            admissions.admit(b, other).is_ok(),
            "others are not held back"
        );
        drop((_third, _b1, _b2, _second));
        let counts = admissions.counts.lock().expect("lock");
        assert!(counts.per_order.is_empty() && counts.per_user.is_empty());
    }
}
