//! Native reads shared within one FHIR request. One request often asks a practice the same question more than
//! once: `$everything` reads a Medicus patient's prescriptions for Medication, MedicationRequest and
//! MedicationStatement alike, and each clinician its resources reference from one list of staff. Within the
//! request, a GET asked again (same practice, surface, linkage, record and request) is answered by the reply the
//! first one got, or waits for it while it is in flight, so the supplier is asked once.
//!
//! The replies live in a task-local set up per request ([`within_request`]): they end with it and cannot reach
//! another request, whoever sends it. Outside one (unit tests, tools) every call is made. Only reads are
//! shared, as each dialect tells them (an HTTP GET; a SystmOne function or message known to read).

use super::NativeCall;
use crate::fhir::FhirResult;
use crate::mapping::node::Native;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// One read's reply (or failure), once it is in.
type Shared = Arc<OnceCell<FhirResult<Arc<Native>>>>;

/// One request's native reads, by what was asked.
#[derive(Default)]
struct Replies(Mutex<HashMap<String, Shared>>);

tokio::task_local! {
    static REPLIES: Replies;
}

/// Runs one request's handling with its own shared native reads.
pub async fn within_request<F: Future>(handling: F) -> F::Output {
    REPLIES.scope(Replies::default(), handling).await
}

/// The reply to a call: made by `make`, or, for a read (as its dialect tells), shared with an identical read
/// already made (or in flight) in this request.
pub async fn read<Make, Made>(ods: &str, call: &NativeCall<'_>, is_read: bool, make: Make) -> FhirResult<Arc<Native>>
where
    Make: FnOnce() -> Made,
    Made: Future<Output = FhirResult<Native>>,
{
    let made = || async { make().await.map(Arc::new) };
    if !is_read {
        return made().await;
    }
    let key = read_key(ods, call);
    let cell = REPLIES.try_with(|replies| {
        let mut replies = replies.0.lock().ok()?;
        Some(replies.entry(key).or_default().clone())
    });
    match cell {
        Ok(Some(cell)) => cell.get_or_init(made).await.clone(),
        // Outside a request (or a poisoned lock, which sharing is not worth failing for): the call is made.
        _ => made().await,
    }
}

/// What identifies a read: everything that shapes the native call and its answer.
fn read_key(ods: &str, call: &NativeCall<'_>) -> String {
    // Unit separators: no part can run into the next.
    format!(
        "{ods}\u{1f}{:?}\u{1f}{}\u{1f}{}\u{1f}{}",
        call.surface,
        call.patient_nhs.unwrap_or_default(),
        call.record.unwrap_or_default(),
        call.request
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::FhirError;
    use crate::mapping::Surface;
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn call<'a>(request: &'a Value, record: Option<&'a str>) -> NativeCall<'a> {
        NativeCall {
            surface: Surface::Transaction,
            request,
            patient_nhs: None,
            record,
            request_id: "r",
        }
    }

    #[tokio::test]
    async fn a_read_asked_again_in_a_request_is_made_once() {
        let made = AtomicUsize::new(0);
        let make = || async {
            made.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<_, FhirError>(Native::from(made.load(Ordering::SeqCst) as u64))
        };
        let staff = json!({ "method": "GET", "path": "practitioners" });
        let journal = json!({ "method": "GET", "path": "journal", "query": { "types": "problem" } });
        let booking = json!({ "method": "POST", "path": "appointments", "body": { "slot": "1" } });
        within_request(async {
            // Asked twice at once, and once more after: one call.
            let (first, second) = (call(&staff, None), call(&staff, None));
            let (a, b) = tokio::join!(read("Y1", &first, true, make), read("Y1", &second, true, make));
            let c = read("Y1", &call(&staff, None), true, make).await;
            for reply in [a, b, c] {
                assert_eq!(*reply.unwrap(), Native::from(1u64));
            }
            // Another practice, another record, another request: calls of their own.
            read("Y2", &call(&staff, None), true, make).await.unwrap();
            read("Y1", &call(&staff, Some("patient-2")), true, make).await.unwrap();
            read("Y1", &call(&journal, None), true, make).await.unwrap();
            // Writes are always made.
            read("Y1", &call(&booking, None), false, make).await.unwrap();
            read("Y1", &call(&booking, None), false, make).await.unwrap();
        })
        .await;
        assert_eq!(made.load(Ordering::SeqCst), 6);
        // Another request shares nothing with the first; outside one, nothing is shared.
        within_request(read("Y1", &call(&staff, None), true, make))
            .await
            .unwrap();
        read("Y1", &call(&staff, None), true, make).await.unwrap();
        read("Y1", &call(&staff, None), true, make).await.unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 9);
    }
}
