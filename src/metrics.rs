//! Prometheus metrics (`/metrics`, text format): requests by interaction and status, request latency, and
//! native calls by supplier and status.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub interaction: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InteractionLabel {
    pub interaction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit`, `miss` (loaded), `fresh` (loaded: asked for an answer newer than the one kept) or `off`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SupplierLabel {
    pub supplier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabels {
    pub practice: String,
    /// `transaction` or `patient`.
    pub surface: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NativeLabels {
    pub supplier: String,
    pub status: u16,
}

/// The interaction a response answered, as the handler names it (`search-type`, `readyz`...): carried in the
/// response's extensions to where requests are counted, outside the audit layer, which may withhold it.
#[derive(Clone, Debug)]
pub struct Answered(pub String);

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<InteractionLabel, Histogram>,
    pub native_calls: Family<NativeLabels, Counter>,
    pub native_latency: Family<SupplierLabel, Histogram>,
    pub cache_lookups: Family<CacheLabels, Counter>,
    /// 1 while the breaker stops calls to an API of a practice; set when the metrics are read.
    pub circuit_open: Family<CircuitLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Counts a request by the status its client got, and its latency. A response the handler did not make
    /// (the whole request's deadline passed) is named by that.
    pub fn count<B>(&self, response: &http::Response<B>, started: std::time::Instant) {
        let interaction = match response.extensions().get::<Answered>() {
            Some(Answered(name)) => name.clone(),
            None if response.status() == http::StatusCode::GATEWAY_TIMEOUT => "timeout".to_string(),
            None => "unknown".to_string(),
        };
        let status = response.status().as_u16();
        self.requests
            .get_or_create(&RequestLabels {
                interaction: interaction.clone(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&InteractionLabel { interaction })
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("im1_fhir");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<InteractionLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let native_calls = Family::<NativeLabels, Counter>::default();
        let native_latency =
            Family::<SupplierLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "requests",
            "FHIR requests by interaction and HTTP status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "FHIR request latency by interaction",
            latency.clone(),
        );
        registry.register(
            "native_calls",
            "Native calls by supplier and HTTP status (0: no reply)",
            native_calls.clone(),
        );
        registry.register(
            "native_call_duration_seconds",
            "Native call latency by supplier",
            native_latency.clone(),
        );
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Response cache lookups by outcome (hit, miss, fresh, off)",
            cache_lookups.clone(),
        );
        let circuit_open = Family::<CircuitLabels, Gauge>::default();
        registry.register(
            "native_circuit_open",
            "1 while the circuit breaker stops native calls to that API of the practice (its GP system left its last calls unanswered): open, or half-open with its one trial call out",
            circuit_open.clone(),
        );
        Metrics {
            registry,
            cache_lookups,
            circuit_open,
            requests,
            latency,
            native_calls,
            native_latency,
        }
    }

    /// Sets `native_circuit_open` from each practice's breakers, as they are now.
    pub fn read_circuits(&self, backend: &crate::backend::Backend) {
        use crate::mapping::Surface;
        for practice in backend.practices() {
            for (surface, name) in [(Surface::Transaction, "transaction"), (Surface::Patient, "patient")] {
                let labels = CircuitLabels {
                    practice: practice.ods.clone(),
                    surface: name,
                };
                let open = practice.is_circuit_open(surface);
                self.circuit_open.get_or_create(&labels).set(i64::from(open));
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}
