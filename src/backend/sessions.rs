//! Patients' sessions with a supplier's patient-facing API, one slot per patient. Finding a slot takes no lock
//! of its own; a slot's own lock is held while its session is started or renewed (and, where the supplier
//! wants one request at a time per session, while it is used), so one patient's logon never holds up another's
//! requests. A slot no request has used for [`IDLE`] is let go, with what it held (a session, and with it
//! some of the patient's data): the suppliers' sessions end sooner, so nothing still usable is lost, and the
//! slots held are those of the patients seen lately, not of every patient ever seen.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// A patient's session slot: empty until the first logon.
pub type Slot<S> = Arc<Mutex<Option<S>>>;

/// How long a slot no request uses is kept: longer than any supplier keeps an idle session.
pub const IDLE: Duration = Duration::from_secs(30 * 60);

/// Slots held at most per practice: far more patients than use an app in half an hour, so that a burst of
/// distinct patients (or of tokens naming them) cannot hold memory without bound. Past it, moka's eviction
/// lets some go; a request using one keeps it (the `Arc` it holds), and a later one starts a new session.
pub const MAX_SLOTS: u64 = 100_000;

/// Session slots per patient NHS number.
pub struct SessionSlots<S> {
    slots: moka::future::Cache<String, Slot<S>>,
}

impl<S: Send + Sync + 'static> Default for SessionSlots<S> {
    fn default() -> Self {
        SessionSlots::with_idle(IDLE)
    }
}

impl<S: Send + Sync + 'static> SessionSlots<S> {
    /// Slots let go after `idle` without a request.
    pub fn with_idle(idle: Duration) -> Self {
        SessionSlots {
            slots: moka::future::Cache::builder()
                .time_to_idle(idle)
                .max_capacity(MAX_SLOTS)
                .build(),
        }
    }

    /// The slot of a patient's session. Asking for it keeps it: a slot in use is never let go.
    pub async fn slot(&self, nhs: &str) -> Slot<S> {
        self.slots.get_with_by_ref(nhs, async { Slot::default() }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_is_the_same_while_used_and_let_go_when_idle() {
        let slots = SessionSlots::<u32>::with_idle(Duration::from_millis(200));
        let first = slots.slot("9000000009").await;
        *first.lock().await = Some(1);
        assert_eq!(*slots.slot("9000000009").await.lock().await, Some(1));
        assert_eq!(*slots.slot("9000000017").await.lock().await, None);
        tokio::time::sleep(Duration::from_millis(400)).await;
        slots.slots.run_pending_tasks().await;
        assert_eq!(*slots.slot("9000000009").await.lock().await, None, "let go when idle");
    }
}
