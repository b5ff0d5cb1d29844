//! Patients' sessions with a supplier's patient-facing API, one slot per patient. The map's lock is held only
//! to find a slot; a slot's own lock is held while its session is started or renewed (and, where the supplier
//! wants one request at a time per session, while it is used), so one patient's logon never holds up another's
//! requests.

use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// A patient's session slot: empty until the first logon.
pub type Slot<S> = Arc<Mutex<Option<S>>>;

/// Session slots per patient NHS number.
pub struct SessionSlots<S> {
    slots: Mutex<HashMap<String, Slot<S>>>,
}

impl<S> Default for SessionSlots<S> {
    fn default() -> Self {
        SessionSlots {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<S> SessionSlots<S> {
    /// The slot of a patient's session.
    pub async fn slot(&self, nhs: &str) -> Slot<S> {
        let mut slots = self.slots.lock().await;
        slots.entry(nhs.to_string()).or_default().clone()
    }
}
