//! Draining a queue in batches: the first item waits a little for the ones behind it, so a
//! busy queue costs its consumer one wake-up (and one write or round trip) per batch
//! instead of one per item. [`batch_writer`] runs the trail and offer writers; the
//! tracking relay drains its own queue with [`next_batch`].

use std::time::Duration;

use tokio::sync::mpsc;

/// Waits for the next item on `rx`, then for `linger` (unless `buf` is already full), and
/// moves what is queued into `buf`, up to `max` items in all. While the caller sleeps
/// through `linger`, senders only queue: nobody is woken per item. False once every
/// sender is gone and the queue is empty.
pub async fn next_batch<T>(
    rx: &mut mpsc::Receiver<T>,
    buf: &mut Vec<T>,
    max: usize,
    linger: Duration,
) -> bool {
    if rx.recv_many(buf, max).await == 0 {
        return false;
    }
    if buf.len() < max && !linger.is_zero() {
        tokio::time::sleep(linger).await;
    }
    while buf.len() < max {
        match rx.try_recv() {
            Ok(item) => buf.push(item),
            Err(_) => break,
        }
    }
    true
}

/// A queue of `queue` items drained by a task that hands them to `write` in batches of up
/// to `batch` ([`next_batch`]: the first item waits `linger` for others). Ends, after
/// writing what is queued, when every sender is gone.
pub fn batch_writer<T, F, Fut>(
    (queue, batch, linger): (usize, usize, Duration),
    mut write: F,
) -> mpsc::Sender<T>
where
    T: 'static,
    F: FnMut(Vec<T>) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (tx, mut rx) = mpsc::channel::<T>(queue);
    actix_web::rt::spawn(async move {
        let mut buf = Vec::new();
        while next_batch(&mut rx, &mut buf, batch, linger).await {
            write(std::mem::take(&mut buf)).await;
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_sent_during_the_linger_join_the_batch_up_to_the_maximum() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(1).await.expect("send");
        let later = tx.clone();
        let (mut buf, linger) = (Vec::new(), Duration::from_millis(50));
        let (got, ()) = tokio::join!(next_batch(&mut rx, &mut buf, 3, linger), async move {
            for n in 2..=4 {
                later.send(n).await.expect("send");
            }
        });
        assert!(got);
        assert_eq!(buf, vec![1, 2, 3]);
        buf.clear();
        drop(tx);
        assert!(next_batch(&mut rx, &mut buf, 3, Duration::ZERO).await);
        assert_eq!(buf, vec![4]);
        buf.clear();
        assert!(!next_batch(&mut rx, &mut buf, 3, Duration::ZERO).await);
    }
}
