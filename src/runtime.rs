//! Putting the parts together: state from configuration, the listener, logging and shutdown signals.

use crate::app::AppState;
use crate::auth::token::{Issuer, Verifier};
use crate::backend::credentials::CredentialStore;
use crate::backend::Backend;
use crate::config::{NativeConfig, PracticeConfig, ServerConfig};
use crate::fhir::bundle::PageTokens;
use crate::ids::IdCodec;
use crate::mapping::Registry;
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Makes ring the process's TLS provider (for the native client); safe to call more than once.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Everything needed to build the proxy's state.
pub struct Parts {
    pub registry: Arc<Registry>,
    pub practices: Vec<PracticeConfig>,
    pub native: NativeConfig,
    pub issuers: Vec<Issuer>,
    pub secret_key: Vec<u8>,
    pub linkage: Arc<CredentialStore>,
    pub public_base_url: Option<String>,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive whole.
    pub body_timeout_ms: u64,
    pub audit: Option<crate::audit::AuditStore>,
    /// Per-client rate limit; None: unlimited.
    pub client_rate: Option<crate::config::ClientRate>,
    pub cache: crate::cache::CacheConfig,
    /// FHIR requests handled at once (see `ServerConfig`).
    pub max_requests_in_flight: usize,
}

pub fn build_state(parts: Parts) -> Result<Arc<AppState>, String> {
    install_crypto();
    let backend = Backend::new(&parts.practices, &parts.native, parts.linkage).map_err(|e| e.message)?;
    let smart = crate::fhir::capability::SmartIssuer::of(&parts.issuers);
    let started = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "2026-01-01T00:00:00Z".into());
    Ok(Arc::new(AppState {
        registry: parts.registry,
        backend,
        ids: IdCodec::new(&parts.secret_key),
        pages: PageTokens::new(&parts.secret_key),
        verifier: Verifier::new(parts.issuers),
        smart,
        public_base_url: parts.public_base_url,
        max_body_bytes: parts.max_body_bytes,
        body_timeout: std::time::Duration::from_millis(parts.body_timeout_ms),
        metrics: Metrics::new(),
        started,
        ready: AtomicBool::new(false),
        linkages: crate::reach::Linkages::new(parts.cache.linkage_ttl),
        capabilities: Default::default(),
        limiter: parts.client_rate.map(crate::ratelimit::ClientLimiter::new),
        audit: parts.audit,
        cache: crate::cache::ResponseCache::new(parts.cache),
        in_flight: crate::app::InFlight::new(parts.max_requests_in_flight),
    }))
}

/// A running proxy: its address and a way to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub tls: bool,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn base_url(&self) -> String {
        format!("{}://{}/fhir", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }

    /// Waits until the server stops by itself (a signal).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Starts serving on a bound listener; stops on `shutdown()`, or on SIGTERM / Ctrl-C when `signals`.
pub fn start(
    state: Arc<AppState>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    server: &ServerConfig,
    signals: bool,
) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let service = crate::server::stack::stack(
        state.clone(),
        Duration::from_millis(server.request_timeout_ms),
        tls.is_some(),
        crate::server::stack::Clients {
            trusted_proxies: Arc::new(server.trusted_proxies.clone()),
            failed_auth_per_minute: server.failed_auth_per_minute,
        },
    );
    let limits = crate::server::listener::ConnectionLimits {
        idle: Duration::from_millis(server.header_timeout_ms),
        max_connections: connections_that_fit(server.max_connections, state.backend.descriptors()),
    };
    // Every request in flight gets its whole deadline (and its body's) to finish, and its AuditEvent after.
    let drain = Duration::from_millis(server.request_timeout_ms + server.body_timeout_ms) + Duration::from_secs(5);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let is_tls = tls.is_some();
    let serving = state.clone();
    let done = tokio::spawn(async move {
        let draining = serving.clone();
        let shutdown = async move {
            if signals {
                tokio::select! {
                    _ = stopped => {},
                    () = shutdown_signal() => {},
                }
            } else {
                let _ = stopped.await;
            }
            // Load balancers stop sending new work while the rest finishes.
            draining.ready.store(false, Ordering::Relaxed);
        };
        crate::server::listener::serve(listener, tls, service, limits, shutdown, drain).await;
        // Every AuditEvent queued is committed before the process may exit.
        if let Some(audit) = serving.audit.clone() {
            audit.close().await;
        }
    });
    state.ready.store(true, Ordering::Relaxed);
    Ok(Running {
        addr,
        tls: is_tls,
        stop,
        done,
    })
}

/// Descriptors kept for what is neither a client's connection nor a native call's: the audit store's three
/// connections and their WAL files, the forwarding file, the listener, logs, and a margin.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The connections the process's open-files limit leaves room for beside the native calls' `native`
/// descriptors, the soft limit raised toward the hard one first: a cap above the limit would let a flood take
/// the descriptors the audit trail and native calls need.
fn connections_that_fit(wanted: usize, native: u64) -> usize {
    let reserved = RESERVED_DESCRIPTORS.saturating_add(native);
    let needed = u64::try_from(wanted).unwrap_or(u64::MAX).saturating_add(reserved);
    let Ok(limit) = rlimit::increase_nofile_limit(needed) else {
        return wanted;
    };
    let fits = usize::try_from(limit.saturating_sub(reserved))
        .unwrap_or(usize::MAX)
        .max(1);
    if fits < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_files_limit = limit,
            "the open-files limit leaves room for {fits} connections; raise it (ulimit -n, LimitNOFILE)"
        );
    }
    wanted.min(fits)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Structured JSON logs on standard error; `RUST_LOG` filters them (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(true)
        .try_init();
    // Panics are caught where they can happen on input (the FHIR model, each request) and answered; the log
    // gets one structured line with where it happened, never what the panic said, which may hold data.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        tracing::error!(%location, %thread, "panicked");
    }));
}
