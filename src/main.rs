//! The `im1-fhir` command: `demo`, `serve`, `check`, `coverage`, `sim`, `token`. `main` parses the command line and
//! hands over to `run`, which owns the one exit-code policy: 0 success, 1 a problem found (check), 2 a
//! usage or start-up error.

use clap::{Parser, Subcommand};
use im1_fhir::auth::token::{self, Issuer, TokenRequest};
use im1_fhir::auth::Role;
use im1_fhir::mapping::{Registry, Source};
use im1_fhir::runtime;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc rather than the system allocator: translating a native record builds and drops many small JSON
/// maps and strings, and glibc's malloc spent a third of that time consolidating its free lists (see
/// benches/mapping.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "im1-fhir",
    version,
    about = "A FHIR R4 (UK Core) facade over the EMIS, SystmOne and Medicus IM1 APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate configuration, mappings and ConceptMaps; exit 0 only when clean.
    Check {
        /// A configuration file to check (TOML, as `serve` reads it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Load mapping files from this folder instead of the embedded ones.
        #[arg(long)]
        mappings: Option<PathBuf>,
    },
    /// Which UK Core must-support elements each supplier's mappings produce.
    Coverage {
        /// Load mapping files from this folder instead of the embedded ones.
        #[arg(long)]
        mappings: Option<PathBuf>,
        /// The table's format.
        #[arg(long, default_value = "markdown", value_parser = ["markdown", "csv"])]
        format: String,
    },
    /// Serve with a configuration file (production).
    Serve {
        /// The configuration file (TOML; see the README's configuration reference).
        #[arg(long)]
        config: PathBuf,
        /// Load mapping files from this folder instead of the embedded ones.
        #[arg(long)]
        mappings: Option<PathBuf>,
    },
    /// Start the three simulators and the proxy, and print how to try it.
    Demo {
        /// Where the proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Seed of the synthetic patients.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of synthetic patients.
        #[arg(long, default_value_t = 50)]
        patients: usize,
        /// Switch the simulators' native rate limits off (benchmarks only).
        #[arg(long)]
        no_throttle: bool,
        /// Load mapping files from this folder instead of the embedded ones.
        #[arg(long)]
        mappings: Option<PathBuf>,
        /// The AuditEvent store (SQLite); default: a new file in the system's temporary folder.
        #[arg(long)]
        audit_db: Option<PathBuf>,
    },
    /// Start the three simulators alone; one line per simulator with its address.
    Sim {
        /// Seed of the synthetic patients.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of synthetic patients.
        #[arg(long, default_value_t = 50)]
        patients: usize,
        /// Switch the simulators' native rate limits off (benchmarks only).
        #[arg(long)]
        no_throttle: bool,
    },
    /// Print a demo bearer token (signed with the published demo key that only `demo` accepts).
    Token {
        /// ODS code of a practice the token may reach (repeat for a system client).
        #[arg(long = "practice", required = true)]
        practices: Vec<String>,
        /// The patient's NHS number (patient role; default 9000000009).
        #[arg(long)]
        patient: Option<String>,
        /// Whose token: a patient (NHS login), a clinician (CIS2), a system client or an auditor.
        #[arg(long, default_value = "patient", value_parser = ["patient", "clinician", "system", "auditor"])]
        role: String,
        /// Space-separated SMART scopes (default per role).
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("im1-fhir: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Token {
            practices,
            patient,
            role,
            scope,
            ttl,
        } => {
            let role = Role::parse(&role).ok_or("unknown role")?;
            // A token the server would refuse is refused here, with why.
            if let Some(nhs) = &patient {
                if !im1_sim::record::nhs::is_valid(nhs) {
                    return Err("--patient must be a valid NHS number (10 digits, its check digit right)".into());
                }
                if role != Role::Patient {
                    return Err("--patient is for --role patient (whose NHS number the token carries)".into());
                }
            }
            if let Some(scope) = &scope {
                im1_fhir::auth::scopes::parse(scope).map_err(|e| format!("--scope: {e}"))?;
            }
            let token = token::mint_demo(&TokenRequest {
                practices,
                role,
                nhs_number: patient,
                scope,
                ttl_seconds: ttl,
            })?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, mappings } => Ok(check(config, mappings)),
        Command::Coverage { mappings, format } => {
            let registry = Registry::load(&source(mappings))
                .map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
            let coverage = im1_fhir::coverage::compute(&registry);
            match format.as_str() {
                "csv" => print!("{}", im1_fhir::coverage::csv(&coverage)),
                _ => print!("{}", im1_fhir::coverage::markdown(&coverage)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config, mappings } => serve(config, mappings),
        Command::Demo {
            addr,
            seed,
            patients,
            no_throttle,
            mappings,
            audit_db,
        } => demo(addr, seed, patients, !no_throttle, mappings, audit_db),
        Command::Sim {
            seed,
            patients,
            no_throttle,
        } => sim(seed, patients, !no_throttle),
    }
}

fn source(mappings: Option<PathBuf>) -> Source {
    mappings.map(Source::Dir).unwrap_or(Source::Embedded)
}

fn check(config: Option<PathBuf>, mappings: Option<PathBuf>) -> ExitCode {
    let mut clean = true;
    let loaded = config.as_ref().map(|path| (path, im1_fhir::config::load(path)));
    let suppliers: Vec<&str> = match &loaded {
        Some((_, Ok(config))) => config.practices.iter().map(|p| p.supplier.key()).collect(),
        _ => Vec::new(),
    };
    match Registry::load(&source(mappings)) {
        Ok(registry) => match registry.gaps(suppliers) {
            gaps if gaps.is_empty() => println!(
                "mappings: {} files, {} partials, {} ConceptMaps: ok",
                registry.mappings.len(),
                registry.partials.len(),
                registry.concept_maps.iter().count()
            ),
            gaps => {
                clean = false;
                for gap in &gaps {
                    println!("mappings: {gap}");
                }
            }
        },
        Err(problems) => {
            clean = false;
            for problem in &problems {
                println!("{problem}");
            }
            println!("mappings: {} problem(s)", problems.len());
        }
    }
    if let Some((path, loaded)) = loaded {
        match loaded {
            Ok(_) => println!("config {}: ok", path.display()),
            Err(errors) => {
                clean = false;
                for error in &errors {
                    println!("{error}");
                }
            }
        }
    }
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn serve(config_path: PathBuf, mappings: Option<PathBuf>) -> Result<ExitCode, String> {
    runtime::init_logging();
    let config = im1_fhir::config::load(&config_path)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    let registry = Registry::load(&source(mappings))
        .map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    let gaps = registry.gaps(config.practices.iter().map(|p| p.supplier.key()));
    if !gaps.is_empty() {
        return Err(gaps.join("\n"));
    }
    let issuers = config
        .issuers
        .iter()
        .map(|i| {
            Issuer::from_jwks(&i.issuer, &i.audience, &i.jwks).map(|issuer| Issuer {
                token_endpoint: i.token_endpoint.clone(),
                authorization_endpoint: i.authorization_endpoint.clone(),
                ..issuer
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tokio = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    tokio.block_on(async move {
        let state = runtime::build_state(runtime::Parts {
            registry: Arc::new(registry),
            practices: config.practices.clone(),
            native: config.native.clone(),
            issuers,
            secret_key: config.id_key.expose().as_bytes().to_vec(),
            // Patients' linkage arrives from the deployment's NHS login integration.
            linkage: Arc::default(),
            public_base_url: config.server.public_base_url.clone(),
            max_body_bytes: config.server.max_body_bytes,
            body_timeout_ms: config.server.body_timeout_ms,
            audit: Some(
                im1_fhir::audit::AuditStore::open(&config.audit)
                    .map_err(|e| format!("cannot open the audit store: {e}"))?,
            ),
            client_rate: config.server.client_rate,
            cache: config.cache,
            max_requests_in_flight: config.server.max_requests_in_flight,
        })?;
        let tls = match &config.server.tls {
            Some(tls) => Some(im1_fhir::server::listener::tls_acceptor(&tls.cert, &tls.key)?),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
        let running = runtime::start(state, listener, tls, &config.server, true).map_err(|e| e.to_string())?;
        tracing::info!(base = %running.base_url(), "im1-fhir serving");
        running.wait().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn sim_options(seed: u64, patients: usize, throttle: bool) -> Result<im1_sim::SimOptions, String> {
    if patients < 2 {
        return Err("--patients must be at least 2 (patient 9000000009 and the child in their care)".into());
    }
    Ok(im1_sim::SimOptions {
        seed,
        patients,
        throttle,
        today: None,
    })
}

fn sim(seed: u64, patients: usize, throttle: bool) -> Result<ExitCode, String> {
    runtime::init_logging();
    let options = sim_options(seed, patients, throttle)?;
    let tokio = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    tokio.block_on(async move {
        let sims = im1_fhir::demo::Simulators::start(options).await?;
        for line in sims.describe() {
            println!("{line}");
        }
        let _ = tokio::signal::ctrl_c().await;
        sims.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn demo(
    addr: std::net::SocketAddr,
    seed: u64,
    patients: usize,
    throttle: bool,
    mappings: Option<PathBuf>,
    audit_db: Option<PathBuf>,
) -> Result<ExitCode, String> {
    runtime::init_logging();
    let options = sim_options(seed, patients, throttle)?;
    let audit_path =
        audit_db.unwrap_or_else(|| std::env::temp_dir().join(format!("im1-fhir-demo-audit-{}.db", std::process::id())));
    let registry = Registry::load(&source(mappings))
        .map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    let tokio = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    tokio.block_on(async move {
        let sims = im1_fhir::demo::Simulators::start(options).await?;
        let state = runtime::build_state(runtime::Parts {
            registry: Arc::new(registry),
            practices: sims.practices(),
            native: im1_fhir::config::NativeConfig::default(),
            issuers: vec![Issuer::demo()?],
            // Demo only: a fixed key keeps ids stable across restarts of the demo.
            secret_key: im1_fhir::config::DEMO_ID_KEY.as_bytes().to_vec(),
            linkage: sims.linkage(),
            public_base_url: None,
            max_body_bytes: 1024 * 1024,
            body_timeout_ms: im1_fhir::config::ServerConfig::default().body_timeout_ms,
            audit: Some(
                im1_fhir::audit::AuditStore::open(&im1_fhir::audit::AuditConfig::new(&audit_path))
                    // The store's error names the file already.
                    .map_err(|e| e.to_string())?,
            ),
            client_rate: im1_fhir::config::ServerConfig::default().client_rate,
            cache: im1_fhir::cache::CacheConfig::default(),
            max_requests_in_flight: im1_fhir::config::ServerConfig::default().max_requests_in_flight,
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let server = im1_fhir::config::ServerConfig {
            listen: addr,
            ..Default::default()
        };
        let running = runtime::start(state, listener, None, &server, true).map_err(|e| e.to_string())?;
        print_demo(&running.base_url(), &sims, &audit_path);
        running.wait().await;
        sims.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn print_demo(base: &str, sims: &im1_fhir::demo::Simulators, audit_path: &std::path::Path) {
    let mint = |role: Role, practices: &[&str]| {
        token::mint_demo(&TokenRequest {
            practices: practices.iter().map(|p| p.to_string()).collect(),
            role,
            nhs_number: None,
            scope: None,
            ttl_seconds: 86_400,
        })
        .unwrap_or_else(|e| format!("(could not mint: {e})"))
    };
    let all = ["Y90001", "Y90002", "Y90003"];
    println!("im1-fhir demo: FHIR R4 (UK Core) at {base}");
    println!();
    println!("Practices (simulated, seeded):");
    for line in sims.describe() {
        println!("  {line}");
    }
    println!();
    println!("Tokens (24 h, demo key; mint more with `im1-fhir token --help`):");
    println!(
        "  PATIENT_TOKEN={}    # patient 9000000009 at all three practices (who acts for 9000000017: proxy access)",
        mint(Role::Patient, &all)
    );
    println!("  EMIS_CLINICIAN_TOKEN={}", mint(Role::Clinician, &["Y90001"]));
    println!("  TPP_CLINICIAN_TOKEN={}", mint(Role::Clinician, &["Y90002"]));
    println!("  MEDICUS_CLINICIAN_TOKEN={}", mint(Role::Clinician, &["Y90003"]));
    println!(
        "  SYSTEM_TOKEN={}    # system client, all three practices",
        mint(Role::System, &all)
    );
    println!();
    println!("Try:");
    println!("  curl -s {base}/metadata");
    println!(
        "  curl -s -H \"Authorization: Bearer $EMIS_CLINICIAN_TOKEN\" \"{base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009\""
    );
    println!("  curl -s -H \"Authorization: Bearer $PATIENT_TOKEN\" \"{base}/Patient?_count=10\"");
    println!("    (their own Patient first, then the child's; RelatedPerson?patient=<the child's id> shows the link)");
    println!();
    println!(
        "AuditEvents (read them with an auditor token: `im1-fhir token --role auditor ...`) are kept in {} (SQLite; \
         --audit-db chooses the file; it is left for you to read or remove).",
        audit_path.display()
    );
    println!();
    println!("Ctrl-C stops it.");
}
