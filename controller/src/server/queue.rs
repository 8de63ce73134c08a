//! The hub → connection queue of one session: bounded, and never blocking
//! the hub. When an agent falls [`super::limits::OUT_QUEUE_MESSAGES`]
//! behind (it stopped reading, or its path is too slow for the mesh's
//! churn), the queue does not grow: the session ends and the agent
//! resynchronises when it reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, mpsc};

use crate::core::Outgoing;

/// The session's queue was full (or closed): the message was dropped and
/// the session is being ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undelivered;

/// What the hub holds to send to one session.
#[derive(Debug, Clone)]
pub struct OutTx {
    frames: mpsc::Sender<Outgoing>,
    overflow: Arc<Overflow>,
}

/// What the connection task drains, and the signal that it fell too far
/// behind.
#[derive(Debug)]
pub struct OutRx {
    pub frames: mpsc::Receiver<Outgoing>,
    pub overflow: OverflowSignal,
}

/// Completes [`OverflowSignal::overflowed`] once the hub found the queue
/// full.
#[derive(Debug, Clone)]
pub struct OverflowSignal(Arc<Overflow>);

/// Set once when the queue overflows; wakes the connection task, which
/// ends the session.
#[derive(Debug, Default)]
struct Overflow {
    happened: AtomicBool,
    wake: Notify,
}

/// A queue for one session holding at most `capacity` messages.
pub fn out_queue(capacity: usize) -> (OutTx, OutRx) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let overflow = Arc::new(Overflow::default());
    (
        OutTx {
            frames: tx,
            overflow: overflow.clone(),
        },
        OutRx {
            frames: rx,
            overflow: OverflowSignal(overflow),
        },
    )
}

impl OutTx {
    /// Queues `out` without waiting. A full queue ends the session: the
    /// message is dropped, and the connection task is told to close.
    pub fn send(&self, out: Outgoing) -> Result<(), Undelivered> {
        match self.frames.try_send(out) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflow.happened.swap(true, Ordering::AcqRel) {
                    self.overflow.wake.notify_one();
                }
                Err(Undelivered)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Undelivered),
        }
    }
}

impl OverflowSignal {
    /// Completes once the hub overflowed this queue (at once if it did
    /// already).
    pub async fn overflowed(&self) {
        if self.0.happened.load(Ordering::Acquire) {
            return;
        }
        // notify_one stores a permit, so a notification between the check
        // and this wait is not lost.
        self.0.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use freimesh_proto::control::ControllerMsg;

    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_without_blocking_and_signals_the_session() {
        let (tx, rx) = out_queue(2);
        assert_eq!(tx.send(Outgoing::Frame(ControllerMsg::Pong(1))), Ok(()));
        assert_eq!(tx.send(Outgoing::Frame(ControllerMsg::Pong(2))), Ok(()));
        assert_eq!(
            tx.send(Outgoing::Frame(ControllerMsg::Pong(3))),
            Err(Undelivered)
        );
        tokio::time::timeout(std::time::Duration::from_secs(1), rx.overflow.overflowed())
            .await
            .expect("the session is told");
        // Later overflows are refused the same way and still signalled.
        assert_eq!(tx.send(Outgoing::Close), Err(Undelivered));
        rx.overflow.overflowed().await;
    }

    #[tokio::test]
    async fn a_queue_within_its_bound_never_signals() {
        let (tx, mut rx) = out_queue(2);
        for n in 0..10 {
            assert_eq!(tx.send(Outgoing::Frame(ControllerMsg::Pong(n))), Ok(()));
            assert!(rx.frames.recv().await.is_some());
        }
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            rx.overflow.overflowed(),
        )
        .await;
        assert!(waited.is_err(), "no overflow was signalled");
    }

    #[tokio::test]
    async fn a_closed_session_refuses() {
        let (tx, rx) = out_queue(2);
        drop(rx);
        assert_eq!(tx.send(Outgoing::Close), Err(Undelivered));
    }
}
