//! Record reads shared by both surfaces: the event journal (`RequestPatientRecord` / `GetPatientRecord`,
//! newest first, 50 events a page), the medication and allergy overview, test results and binary data.

use crate::coding::{code_only, coded};
use crate::dates::{instant, partial, partial_start};
use crate::errors::TppError;
use crate::render::{all_items, overview_text, result_text, tid, tsub, ItemRef, View, SECTIONS};
use crate::xml::El;
use base64::Engine;
use im1_sim::record::*;
use time::OffsetDateTime;

/// Events per page.
pub const PAGE: usize = 50;

/// Parse a `sections` attribute (space separated; all when absent or empty).
pub fn parse_sections(s: Option<&str>) -> Result<Vec<&'static str>, TppError> {
    let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
        return Ok(SECTIONS.to_vec());
    };
    s.split_whitespace()
        .map(|w| {
            SECTIONS
                .iter()
                .find(|k| **k == w)
                .copied()
                .ok_or_else(|| TppError::invalid(format!("unknown section {w}")))
        })
        .collect()
}

struct Ev {
    at: OffsetDateTime,
    key: String,
    id: String,
    el: El,
}

impl<'a> View<'a> {
    fn item_visible(&self, p: &Patient, item: ItemRef<'_>) -> bool {
        let meta = item.meta();
        if !self.visible(meta) {
            return false;
        }
        match &meta.consultation {
            Some(cid) => p
                .clinical
                .consultations
                .iter()
                .find(|c| &c.meta.id == cid)
                .is_none_or(|c| self.visible(&c.meta)),
            None => true,
        }
    }

    /// The name of the SystmOne unit the patient is registered at.
    fn unit_name(&self, p: &Patient) -> Option<String> {
        p.registrations
            .iter()
            .filter_map(|r| self.record.practice(&r.practice))
            .find(|practice| practice.supplier == Supplier::SystmOne)
            .map(|practice| practice.name.clone())
    }

    fn event_item(&self, item: ItemRef<'_>, section: Option<&str>) -> El {
        let mut el = self.item(item);
        el.set("details", self.details(item));
        if let Some(h) = section {
            el.set("section", h.to_string());
        }
        el
    }

    fn consultation_event(&self, p: &Patient, c: &Consultation, sections: &[&str]) -> El {
        let ev = El::new("Event")
            .attr("id", tid(&c.meta.id))
            .attr("date", instant(c.started_at))
            .attr("doneBy", self.staff_name(&c.practitioner))
            .attr("doneById", tid(&c.practitioner))
            .attr("location", c.location.clone())
            .attr("eventType", "Consultation");
        let mut ev = coded(ev, &c.kind)
            .attr("duration", c.duration_minutes.to_string())
            .attr("recordedDate", instant(c.meta.recorded_at))
            .attr("recordedBy", tid(&c.meta.recorded_by));
        if self.surface == crate::render::Surface::Clinician {
            ev.set("confidential", if c.meta.confidential { "y" } else { "n" });
        }
        let items = all_items(&p.clinical);
        let mut listed: Vec<&Nid> = Vec::new();
        for s in &c.sections {
            for id in &s.items {
                listed.push(id);
                let Some(item) = items.iter().find(|i| &i.meta().id == id) else {
                    continue;
                };
                if self.item_visible(p, *item) && sections.contains(&item.section()) {
                    ev.push(self.event_item(*item, Some(&s.heading)));
                }
            }
        }
        for item in &items {
            let m = item.meta();
            if m.consultation.as_ref() == Some(&c.meta.id)
                && !listed.contains(&&m.id)
                && self.item_visible(p, *item)
                && sections.contains(&item.section())
            {
                ev.push(self.event_item(*item, None));
            }
        }
        ev
    }

    /// Every event of a patient for the chosen sections, newest first.
    fn events(&self, p: &Patient, sections: &[&str]) -> Vec<Ev> {
        let grouped = sections.contains(&"consultations");
        let mut out = Vec::new();
        if grouped {
            for c in &p.clinical.consultations {
                if self.visible(&c.meta) {
                    out.push(Ev {
                        at: c.started_at,
                        key: c.meta.id.0.clone(),
                        id: tid(&c.meta.id),
                        el: self.consultation_event(p, c, sections),
                    });
                }
            }
        }
        for item in all_items(&p.clinical) {
            let meta = item.meta();
            let in_consultation = meta
                .consultation
                .as_ref()
                .is_some_and(|cid| p.clinical.consultations.iter().any(|c| &c.meta.id == cid));
            if (grouped && in_consultation) || !sections.contains(&item.section()) || !self.item_visible(p, item) {
                continue;
            }
            let d = item.date();
            let (date, acc) = partial(&d);
            let el = El::new("Event")
                .attr("id", tsub(&meta.id, "event"))
                .attr("date", date)
                .attr("dateAccuracy", acc)
                .attr("doneBy", self.staff_name(&meta.recorded_by))
                .attr("doneById", tid(&meta.recorded_by))
                // TPP's `location` of an event: for an entry outside a consultation, the unit it was made at.
                .opt("location", self.unit_name(p))
                .attr("eventType", "Entry")
                .child(self.event_item(item, None));
            out.push(Ev {
                at: partial_start(&d),
                key: meta.id.0.clone(),
                id: tsub(&meta.id, "event"),
                el,
            });
        }
        out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.key.cmp(&a.key)));
        out
    }

    /// Fill `root` with one page of events (`moreAvailable`, `resumeFrom`).
    pub fn record_page(
        &self,
        p: &Patient,
        sections: &[&str],
        resume_from: Option<&str>,
        root: El,
    ) -> Result<El, TppError> {
        let events = self.events(p, sections);
        let start = match resume_from.filter(|r| !r.is_empty()) {
            None => 0,
            Some(r) => events
                .iter()
                .position(|e| e.id == r)
                .ok_or_else(|| TppError::invalid(format!("unknown resumeFrom {r}")))?,
        };
        let end = (start + PAGE).min(events.len());
        let more = end < events.len();
        let mut root = root.attr("moreAvailable", if more { "true" } else { "false" });
        if more {
            if let Some(next) = events.get(end) {
                root.set("resumeFrom", next.id.clone());
            }
        }
        Ok(root.children(events[start..end].iter().map(|e| e.el.clone())))
    }

    /// `ViewPatientOverview`: allergies, drug sensitivities (always empty: the record does not split them),
    /// acute drugs, current and past repeats; each `Item` with its text content.
    pub fn overview(&self, p: &Patient, root: El) -> El {
        let c = &p.clinical;
        let item = |i: ItemRef<'_>| self.item(i).text(overview_text(i));
        let allergies = c
            .allergies
            .iter()
            .filter(|a| self.visible(&a.meta))
            .map(|a| item(ItemRef::Allergy(a)));
        let meds = |pred: &dyn Fn(&MedicationCourse) -> bool| {
            c.medications
                .iter()
                .filter(|m| self.visible(&m.meta) && pred(m))
                .map(|m| item(ItemRef::Medication(m)))
                .collect::<Vec<_>>()
        };
        let current = meds(&|m| m.kind == CourseKind::Repeat && m.status == CourseStatus::Active);
        let past = meds(&|m| m.kind == CourseKind::Repeat && m.status != CourseStatus::Active);
        let acute = meds(&|m| m.kind == CourseKind::Acute);
        root.child(El::new("Allergies").children(allergies))
            .child(El::new("DrugSensitivities"))
            .child(El::new("Drugs").children(acute))
            .child(El::new("CurrentRepeats").children(current))
            .child(El::new("PastRepeats").children(past))
    }

    /// `TestResultsView`: laboratory results in a window, free text only (as the confirmed API gives them).
    pub fn test_results(&self, p: &Patient, from: Option<OffsetDateTime>, to: Option<OffsetDateTime>, root: El) -> El {
        let mut results: Vec<&Observation> = p
            .clinical
            .observations
            .iter()
            .filter(|o| o.kind == ObservationKind::Laboratory && self.visible(&o.meta))
            .filter(|o| {
                let at = partial_start(&o.effective);
                from.is_none_or(|f| at >= f) && to.is_none_or(|t| at <= t)
            })
            .collect();
        results.sort_by(|a, b| {
            partial_start(&b.effective)
                .cmp(&partial_start(&a.effective))
                .then_with(|| b.meta.id.cmp(&a.meta.id))
        });
        root.children(results.into_iter().map(|o| self.result_summary(o)))
    }

    fn result_summary(&self, o: &Observation) -> El {
        let (date, acc) = partial(&o.effective);
        let el = El::new("Item")
            .attr("id", tid(&o.meta.id))
            .attr("date", date)
            .attr("dateAccuracy", acc);
        coded(el, &o.code).text(result_text(o))
    }

    /// `TestResultsViewDetailed`: one result, its text and one `Line` per component.
    pub fn test_result(&self, p: &Patient, id: &Nid, root: El) -> Result<El, TppError> {
        let o = p
            .clinical
            .observations
            .iter()
            .find(|o| &o.meta.id == id && self.visible(&o.meta))
            .ok_or_else(|| TppError::item_not_found("test result"))?;
        let mut item = self.result_summary(o);
        if let ObservationValue::Components(parts) = &o.value {
            for c in parts {
                item.push(
                    code_only(El::new("Line"), &c.code)
                        .attr("description", c.code.display.clone())
                        .text(format!("{} {}", c.value.value_text(), c.value.unit)),
                );
            }
        }
        Ok(root.child(item))
    }

    /// The document behind a `binaryDataId`, if visible.
    pub fn document_by_binary_id<'p>(&self, p: &'p Patient, binary: &str) -> Option<&'p Document> {
        p.clinical
            .documents
            .iter()
            .find(|d| tsub(&d.meta.id, "binary") == binary && self.visible(&d.meta))
    }
}

/// Base64 pages of a document (64 KiB of content a page).
pub const BINARY_PAGE: usize = 64 * 1024;

/// Fill `root` with one page of a document: `pages`, `contentType`, `size`, `BinaryDataPage`.
pub fn binary_page(d: &Document, page: usize, root: El) -> Result<El, TppError> {
    let pages = d.content.len().div_ceil(BINARY_PAGE).max(1);
    if page == 0 || page > pages {
        return Err(TppError::invalid(format!("page {page} of {pages}")));
    }
    let start = (page - 1) * BINARY_PAGE;
    let end = (start + BINARY_PAGE).min(d.content.len());
    let data = base64::engine::general_purpose::STANDARD.encode(&d.content[start..end]);
    Ok(root
        .attr("pages", pages.to_string())
        .attr("contentType", d.mime_type.clone())
        .attr("size", d.content.len().to_string())
        .child(El::new("BinaryDataPage").attr("number", page.to_string()).text(data)))
}
