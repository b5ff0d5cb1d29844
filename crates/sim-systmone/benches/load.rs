//! Load: PFS `ViewPatientOverview` for patient 9000000009 over keep-alive connections, throttle off.
//! The simulator runs on its own single-threaded runtime (one core); clients run on another thread.
//! `cargo bench -p im1-sim-systmone --bench load` prints requests/s, p50 and p99, and requests per CPU second
//! of the simulator's thread (the figure that does not depend on what else the machine is doing).

use im1_sim::SimOptions;
use im1_sim_systmone::{linkage_credentials, serve, SystmOneConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 16;
const SECONDS: u64 = 5;

async fn call(conn: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<(u16, Vec<u8>, Option<String>)> {
    conn.get_mut().write_all(request).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut len = 0usize;
    let mut suid = None;
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            if k.eq_ignore_ascii_case("suid") {
                suid = Some(v.trim().to_string());
            }
        }
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await?;
    Ok((status, body, suid))
}

fn request(kind: &str, suid: Option<&str>, body: &str) -> Vec<u8> {
    let mut r = format!(
        "POST /tpp/pfs HTTP/1.1\r\nHost: sim\r\ntype: {kind}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(s) = suid {
        r.push_str(&format!("suid: {s}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

fn attr(body: &[u8], key: &str) -> String {
    let text = String::from_utf8_lossy(body);
    text.split_once(&format!("{key}=\""))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

/// CPU seconds (user + system) of the calling thread, from `/proc/thread-self/stat` (Linux; 0 elsewhere).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15 (clock ticks, 100 a second on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

type CpuProbe = tokio::sync::mpsc::UnboundedSender<tokio::sync::oneshot::Sender<f64>>;

fn main() {
    let (tx, rx) = std::sync::mpsc::channel::<(SocketAddr, Vec<im1_sim_systmone::TppLinkage>, CpuProbe)>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let world = SimOptions {
                today: Some(time::macros::date!(2025 - 03 - 03)),
                ..SimOptions::default()
            }
            .world();
            let config = SystmOneConfig {
                throttle: false,
                ..SystmOneConfig::default()
            };
            let creds = linkage_credentials(&world, &config);
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let h = serve(http, tcp, world, config).await;
            let (probe, mut probes) = tokio::sync::mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<f64>>();
            let _ = tx.send((h.pfs.addr(), creds, probe));
            // Answer CPU probes from this (the simulator's only) thread.
            while let Some(reply) = probes.recv().await {
                let _ = reply.send(thread_cpu_secs());
            }
            drop(h);
        });
    });
    let (addr, creds, probe) = rx.recv().expect("server started");
    let cpu = move || {
        let probe = probe.clone();
        async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = probe.send(tx);
            rx.await.unwrap_or(0.0)
        }
    };
    let c = creds
        .into_iter()
        .find(|c| c.nhs_number == "9000000009")
        .expect("patient");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut conn = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
        let app = r#"<Application name="bench" version="1" providerId="SIM-PROVIDER-01" deviceType="server"/>"#;
        let link = format!(r#"<LinkAccount apiVersion="1" uuid="l" organisationCode="{}" accountId="{}" passphrase="{}" lastName="{}" dateOfBirth="{}" providerId="SIM-PROVIDER-01">{app}</LinkAccount>"#, c.organisation_code, c.account_id, c.passphrase, c.last_name, c.date_of_birth);
        let (_, body, _) = call(&mut conn, &request("LinkAccount", None, &link)).await.expect("link");
        let pass = attr(&body, "passphrase");
        let auth = format!(r#"<Authenticate apiVersion="1" uuid="a" accountId="{}" passphrase="{pass}" providerId="SIM-PROVIDER-01">{app}</Authenticate>"#, c.account_id);
        let (_, _, suid) = call(&mut conn, &request("Authenticate", None, &auth)).await.expect("auth");
        let suid = suid.expect("suid");
        let read = format!(r#"<ViewPatientOverview apiVersion="1" uuid="r" unitId="Y90002" patientId="{}"/>"#, c.patient_id);
        let req = request("ViewPatientOverview", Some(&suid), &read);
        let deadline = Instant::now() + Duration::from_secs(SECONDS);
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let req = req.clone();
            tasks.push(tokio::spawn(async move {
                let mut conn = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (status, _, _) = call(&mut conn, &req).await.expect("call");
                    assert_eq!(status, 200);
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let start = Instant::now();
        let cpu_start = cpu().await;
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu_secs = cpu().await - cpu_start;
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "sim-systmone PFS ViewPatientOverview: {} requests in {secs:.1} s = {:.0} req/s over {CONNECTIONS} keep-alive connections; p50 {:?}, p99 {:?}",
            all.len(),
            all.len() as f64 / secs,
            pct(0.50),
            pct(0.99)
        );
        if cpu_secs > 0.0 {
            println!(
                "simulator thread used {cpu_secs:.2} CPU s: {:.0} requests per CPU second (one core)",
                all.len() as f64 / cpu_secs
            );
        }
    });
}
