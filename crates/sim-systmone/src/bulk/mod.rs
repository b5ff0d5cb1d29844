//! Strategic Reporting extracts, produced on demand (the real ones are scheduled): one CSV per table plus an
//! `SRManifest.xml` listing the files, their row counts and the extract time. Delivery (invented):
//! `POST /tpp/bulk/{unit}/extracts` makes an extract from the world as it is now and answers its manifest;
//! `GET /tpp/bulk/{unit}/extracts/{extractId}/{file}` fetches the manifest or a table. Header `apiKey` must
//! carry the Client Integration API key. The tables themselves are built in `tables`.

mod tables;

use crate::dates::instant;
use crate::errors::TppError;
use crate::pfs::xml_reply;
use crate::render::tsub;
use crate::xml::El;
use crate::SystmOneConfig;
use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use im1_sim::common::{RequestContext, SimRequest, SimResponse};
use im1_sim::record::*;
use std::sync::Mutex;

/// Extracts kept in memory (oldest dropped first).
const KEEP: usize = 4;

pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) header: &'static [&'static str],
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(name: &'static str, header: &'static [&'static str]) -> Table {
        Table {
            name,
            header,
            rows: Vec::new(),
        }
    }

    /// Every field in `"` (doubled inside), comma separated, CRLF line ends.
    fn csv(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, fields: &mut dyn Iterator<Item = &str>| {
            let mut first = true;
            for f in fields {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push('"');
                out.push_str(&f.replace('"', "\"\""));
                out.push('"');
            }
            out.push_str("\r\n");
        };
        line(&mut out, &mut self.header.iter().copied());
        for r in &self.rows {
            line(&mut out, &mut r.iter().map(String::as_str));
        }
        out
    }
}

struct Extract {
    id: String,
    manifest: String,
    files: Vec<(String, String)>,
}

/// The extracts made so far.
#[derive(Default)]
pub struct Extracts {
    made: Mutex<Vec<Extract>>,
    counter: std::sync::atomic::AtomicU64,
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> SimResponse {
    let mut r = http::Response::new(Bytes::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error(status: u16, e: &TppError) -> SimResponse {
    xml_reply(status, e.pfs_element("").to_xml())
}

impl Extracts {
    fn make(&self, world: &World, ods: &str) -> (String, String) {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = tsub(&Nid(format!("{ods}#extract#{n}")), "bulk");
        let at = world.now();
        let tables = world.read(|r| tables::tables(r, ods));
        let files: Vec<(String, String)> = tables.iter().map(|t| (format!("{}.csv", t.name), t.csv())).collect();
        let manifest = El::new("SRManifest")
            .attr("extractId", id.clone())
            .attr("unitId", ods)
            .attr("extractDate", instant(at))
            .attr("delimiter", ",")
            .attr("textQualifier", "\"")
            .children(tables.iter().zip(&files).map(|(t, (name, body))| {
                El::new("File")
                    .attr("name", name.clone())
                    .attr("table", t.name)
                    .attr("rows", t.rows.len().to_string())
                    .attr("bytes", body.len().to_string())
            }))
            .to_xml();
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if made.len() >= KEEP {
            made.remove(0);
        }
        made.push(Extract {
            id: id.clone(),
            manifest: manifest.clone(),
            files,
        });
        (id, manifest)
    }

    /// Answer a `/tpp/bulk/...` request.
    pub fn handle(&self, world: &World, config: &SystmOneConfig, req: &SimRequest, cx: &RequestContext) -> SimResponse {
        let _ = cx;
        if req.headers().get("apiKey").and_then(|v| v.to_str().ok()) != Some(config.api_key.as_str()) {
            return error(401, &TppError::not_authenticated());
        }
        let path = req.uri().path().trim_start_matches("/tpp/bulk/");
        let parts: Vec<&str> = path.split('/').collect();
        if parts.first() != Some(&config.unit_id.as_str()) || parts.get(1) != Some(&"extracts") {
            return error(404, &TppError::item_not_found("bulk path"));
        }
        match (req.method(), &parts[2..]) {
            (&Method::POST, []) => {
                let (_, manifest) = self.make(world, &config.unit_id);
                text(StatusCode::CREATED, "text/xml; charset=utf-8", manifest)
            }
            (&Method::GET, [id, file]) => {
                let made = self.made.lock().unwrap_or_else(|e| e.into_inner());
                let Some(x) = made.iter().find(|x| x.id == *id) else {
                    return error(404, &TppError::item_not_found("extract"));
                };
                if *file == "SRManifest.xml" {
                    return text(StatusCode::OK, "text/xml; charset=utf-8", x.manifest.clone());
                }
                match x.files.iter().find(|(n, _)| n == file) {
                    Some((_, body)) => text(StatusCode::OK, "text/csv; charset=utf-8", body.clone()),
                    None => error(404, &TppError::item_not_found("file")),
                }
            }
            _ => error(404, &TppError::item_not_found("bulk path")),
        }
    }
}
