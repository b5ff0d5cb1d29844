//! On-demand bulk extract in the style of the EMIS extract specification v8.0: one CSV file per table, a
//! subset of its columns, GUIDs in braces, dates `yyyy-MM-dd`, times `HH:mm:ss` (UK local), `Deleted` and a
//! `ProcessingId` (apply order within the file). With `since`, patient tables hold only the patients the
//! changes feed reports after that instant; practice tables are always whole.

use crate::dates;
use crate::errors::{message, model_state, ok};
use crate::render::{code_id, guid, user_in_role};
use crate::request::Query;
use crate::routes::Emis;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use im1_sim::common::{SimRequest, SimResponse};
use im1_sim::record::codes::CodeIdKind;
use im1_sim::record::dates::uk_offset_at;
use im1_sim::record::{
    native_sub_id, CodeIdTable, Interpretation, Nid, ObservationValue, PartialDate, Patient, Precision, Record,
    Supplier, Telecom,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The tables of an extract, in delivery order.
pub const TABLES: [&str; 12] = [
    "Admin_Organisation",
    "Admin_UserInRole",
    "Admin_Patient",
    "Appointment_Session",
    "Appointment_Slot",
    "CareRecord_Consultation",
    "CareRecord_Observation",
    "CareRecord_Problem",
    "Prescribing_DrugRecord",
    "Prescribing_IssueRecord",
    "Coding_ClinicalCode",
    "Coding_DrugCode",
];

struct Table {
    header: &'static [&'static str],
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &'static [&'static str]) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    /// Add a row; `Deleted` and `ProcessingId` are appended here.
    fn push(&mut self, mut row: Vec<String>) {
        row.push("False".into());
        row.push((self.rows.len() + 1).to_string());
        self.rows.push(row);
    }

    fn csv(&self) -> String {
        let mut out = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let cells: Vec<String> = cells.map(csv_cell).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        };
        line(&mut self.header.iter().copied().chain(["Deleted", "ProcessingId"]));
        for r in &self.rows {
            line(&mut r.iter().map(String::as_str));
        }
        out
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn braced(nid: &Nid) -> String {
    format!("{{{}}}", guid(nid))
}

fn opt(s: Option<String>) -> String {
    s.unwrap_or_default()
}

fn flag(b: bool) -> String {
    if b { "True" } else { "False" }.into()
}

fn local_date(t: OffsetDateTime) -> String {
    dates::day(t.to_offset(uk_offset_at(t)).date())
}

fn local_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(uk_offset_at(t));
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

fn precision(p: &PartialDate) -> &'static str {
    match p.precision() {
        Precision::Year => "Y",
        Precision::YearMonth => "YM",
        Precision::Day => "YMD",
    }
}

fn code(c: &im1_sim::record::Concept) -> String {
    code_id(c).as_i64().map(|n| n.to_string()).unwrap_or_default()
}

fn num(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn abnormal(i: Option<Interpretation>) -> String {
    match i {
        None => String::new(),
        Some(Interpretation::Normal) => "False".into(),
        Some(_) => "True".into(),
    }
}

struct Ctx<'a> {
    r: &'a Record,
    ods: &'a str,
    org: String,
}

impl Ctx<'_> {
    fn user(&self, nid: &Nid) -> String {
        format!("{{{}}}", user_in_role(self.r, self.ods, nid))
    }
}

fn build(name: &str, cx: &Ctx, patients: &[&Patient], cdb: &str) -> Option<Table> {
    let r = cx.r;
    let ods = cx.ods;
    let t = match name {
        "Admin_Organisation" => {
            let mut t = Table::new(&["OrganisationGuid", "CDB", "OrganisationName", "ODSCode"]);
            if let Some(p) = r.practice(ods) {
                t.push(vec![cx.org.clone(), cdb.into(), p.name.clone(), p.ods.clone()]);
            }
            t
        }
        "Admin_UserInRole" => {
            let mut t = Table::new(&[
                "UserInRoleGuid",
                "OrganisationGuid",
                "Title",
                "GivenName",
                "Surname",
                "JobCategoryName",
            ]);
            for p in &r.practitioners {
                for role in p.roles.iter().filter(|x| x.practice == ods) {
                    t.push(vec![
                        braced(&role.id),
                        cx.org.clone(),
                        opt(p.name.title.clone()),
                        p.name.given.join(" "),
                        p.name.family.clone(),
                        format!("{:?}", role.role),
                    ]);
                }
            }
            t
        }
        "Admin_Patient" => {
            let mut t = Table::new(&[
                "PatientGuid",
                "OrganisationGuid",
                "UsualGpUserInRoleGuid",
                "NhsNumber",
                "Sex",
                "DateOfBirth",
                "DateOfDeath",
                "Title",
                "GivenName",
                "Surname",
                "HouseNameFlatNumber",
                "NumberAndStreet",
                "Village",
                "Town",
                "County",
                "PostCode",
                "HomePhone",
                "MobilePhone",
                "EmailAddress",
                "EthnicCode",
                "DateOfRegistration",
            ]);
            for p in patients {
                let reg = p.registration(ods);
                let phone = |mobile: bool| {
                    p.telecom.iter().find_map(|x| match x {
                        Telecom::Phone { value, use_ } if (*use_ == im1_sim::record::ContactUse::Mobile) == mobile => {
                            Some(value.clone())
                        }
                        _ => None,
                    })
                };
                let email = p.telecom.iter().find_map(|x| match x {
                    Telecom::Email { value } => Some(value.clone()),
                    _ => None,
                });
                t.push(vec![
                    braced(&p.id),
                    cx.org.clone(),
                    reg.map(|g| cx.user(&g.usual_gp)).unwrap_or_default(),
                    p.nhs_number.clone(),
                    format!("{:?}", p.gender)
                        .chars()
                        .next()
                        .map(String::from)
                        .unwrap_or_default(),
                    dates::day(p.birth_date),
                    opt(p.deceased_at.map(local_date)),
                    opt(p.name.title.clone()),
                    p.name.given.join(" "),
                    p.name.family.clone(),
                    p.address.house.clone(),
                    p.address.street.clone(),
                    opt(p.address.locality.clone()),
                    p.address.town.clone(),
                    opt(p.address.county.clone()),
                    p.address.postcode.clone(),
                    opt(phone(false)),
                    opt(phone(true)),
                    opt(email),
                    opt(p.ethnicity.as_ref().map(|e| e.code.to_string())),
                    opt(reg.map(|g| dates::day(g.registered_on))),
                ]);
            }
            t
        }
        "Appointment_Session" => {
            let mut t = Table::new(&[
                "AppointmentSessionGuid",
                "SessionId",
                "OrganisationGuid",
                "Description",
                "Location",
                "StartDate",
                "StartTime",
                "EndDate",
                "EndTime",
                "SessionUserInRoleGuid",
                "DeliveryMode",
            ]);
            for s in r.sessions_at(ods) {
                t.push(vec![
                    braced(&s.id),
                    s.number.to_string(),
                    cx.org.clone(),
                    s.name.clone(),
                    s.location.clone(),
                    local_date(s.starts_at),
                    local_time(s.starts_at),
                    local_date(s.ends_at),
                    local_time(s.ends_at),
                    cx.user(&s.practitioner),
                    format!("{:?}", s.delivery),
                ]);
            }
            t
        }
        "Appointment_Slot" => {
            let mut t = Table::new(&[
                "SlotGuid",
                "SlotId",
                "AppointmentSessionGuid",
                "OrganisationGuid",
                "StartDate",
                "StartTime",
                "EndTime",
                "SlotTypeName",
                "PatientGuid",
            ]);
            for s in r.slots.iter().filter(|s| s.practice == ods) {
                let patient = s
                    .appointment
                    .as_ref()
                    .and_then(|a| r.appointments.iter().find(|x| &x.id == a))
                    .map(|a| braced(&a.patient));
                t.push(vec![
                    braced(&s.id),
                    s.number.to_string(),
                    braced(&s.session),
                    cx.org.clone(),
                    local_date(s.starts_at),
                    local_time(s.starts_at),
                    local_time(s.ends_at),
                    s.kind.clone(),
                    opt(patient),
                ]);
            }
            t
        }
        "CareRecord_Consultation" => {
            let mut t = Table::new(&[
                "ConsultationGuid",
                "PatientGuid",
                "OrganisationGuid",
                "EffectiveDate",
                "EffectiveDatePrecision",
                "EffectiveTime",
                "EnteredDate",
                "EnteredTime",
                "ClinicianUserInRoleGuid",
                "ConsultationSourceCodeId",
                "ConsultationSourceTerm",
                "Location",
                "IsConfidential",
            ]);
            for p in patients {
                for c in &p.clinical.consultations {
                    t.push(vec![
                        braced(&c.meta.id),
                        braced(&p.id),
                        cx.org.clone(),
                        local_date(c.started_at),
                        "YMD".into(),
                        local_time(c.started_at),
                        local_date(c.meta.recorded_at),
                        local_time(c.meta.recorded_at),
                        cx.user(&c.practitioner),
                        code(&c.kind),
                        c.kind.display.clone(),
                        c.location.clone(),
                        flag(c.meta.confidential),
                    ]);
                }
            }
            t
        }
        "CareRecord_Observation" => observations(cx, patients),
        "CareRecord_Problem" => {
            let mut t = Table::new(&[
                "ObservationGuid",
                "PatientGuid",
                "OrganisationGuid",
                "ProblemStatusDescription",
                "SignificanceDescription",
                "EndDate",
                "EndDatePrecision",
            ]);
            for p in patients {
                for x in &p.clinical.problems {
                    t.push(vec![
                        braced(&x.meta.id),
                        braced(&p.id),
                        cx.org.clone(),
                        format!("{:?}", x.status),
                        format!("{:?}", x.significance),
                        opt(x.ended.map(|d| dates::day(d.first_day()))),
                        opt(x.ended.as_ref().map(|d| precision(d).to_string())),
                    ]);
                }
            }
            t
        }
        "Prescribing_DrugRecord" => {
            let mut t = Table::new(&[
                "DrugRecordGuid",
                "PatientGuid",
                "OrganisationGuid",
                "EffectiveDate",
                "EnteredDate",
                "ClinicianUserInRoleGuid",
                "CodeId",
                "Term",
                "Dosage",
                "Quantity",
                "QuantityUnit",
                "PrescriptionType",
                "IsActive",
                "CancellationDate",
                "ReviewDate",
                "ProblemObservationGuid",
                "IsConfidential",
            ]);
            for p in patients {
                for m in &p.clinical.medications {
                    t.push(vec![
                        braced(&m.meta.id),
                        braced(&p.id),
                        cx.org.clone(),
                        dates::day(m.started_on),
                        local_date(m.meta.recorded_at),
                        cx.user(&m.meta.recorded_by),
                        code(&m.code),
                        m.code.display.clone(),
                        m.dosage.clone(),
                        m.quantity.to_string(),
                        m.quantity_unit.clone(),
                        format!("{:?}", m.kind),
                        flag(m.status == im1_sim::record::CourseStatus::Active),
                        opt(m.ended_at.map(local_date)),
                        opt(m.review_on.map(dates::day)),
                        opt(m.problem.as_ref().map(braced)),
                        flag(m.meta.confidential),
                    ]);
                }
            }
            t
        }
        "Prescribing_IssueRecord" => {
            let mut t = Table::new(&[
                "IssueRecordGuid",
                "DrugRecordGuid",
                "PatientGuid",
                "OrganisationGuid",
                "EffectiveDate",
                "EffectiveTime",
                "CodeId",
                "Dosage",
                "Quantity",
                "QuantityUnit",
            ]);
            for p in patients {
                for m in &p.clinical.medications {
                    for i in &m.issues {
                        t.push(vec![
                            braced(&i.id),
                            braced(&m.meta.id),
                            braced(&p.id),
                            cx.org.clone(),
                            local_date(i.issued_at),
                            local_time(i.issued_at),
                            code(&m.code),
                            m.dosage.clone(),
                            i.quantity.to_string(),
                            m.quantity_unit.clone(),
                        ]);
                    }
                }
            }
            t
        }
        "Coding_ClinicalCode" | "Coding_DrugCode" => {
            let drug = name == "Coding_DrugCode";
            let mut t = if drug {
                Table::new(&["CodeId", "Term", "DmdProductCodeId"])
            } else {
                Table::new(&[
                    "CodeId",
                    "Term",
                    "ReadTermId",
                    "SnomedCTConceptId",
                    "SnomedCTDescriptionId",
                ])
            };
            let kind = if drug { CodeIdKind::Drug } else { CodeIdKind::Clinical };
            for row in CodeIdTable::get().rows().iter().filter(|x| x.kind == kind) {
                let mut cells = vec![row.code_id.to_string(), row.term.clone()];
                if drug {
                    cells.push(opt(row.dmd_product_id.clone()));
                } else {
                    cells.push(opt(row.read_term_id.clone()));
                    cells.push(opt(row.snomed_concept_id.clone()));
                    cells.push(String::new());
                }
                t.push(cells);
            }
            t
        }
        _ => return None,
    };
    Some(t)
}

/// Every coded entry: observations (blood pressure components as child rows with `ParentObservationGuid`),
/// allergies, immunisations and the problems' own observations.
fn observations(cx: &Ctx, patients: &[&Patient]) -> Table {
    let mut t = Table::new(&[
        "ObservationGuid",
        "ParentObservationGuid",
        "PatientGuid",
        "OrganisationGuid",
        "ObservationType",
        "EffectiveDate",
        "EffectiveDatePrecision",
        "EnteredDate",
        "EnteredTime",
        "ClinicianUserInRoleGuid",
        "CodeId",
        "Term",
        "Value",
        "NumericUnit",
        "NumericRangeLow",
        "NumericRangeHigh",
        "Abnormal",
        "TextValue",
        "ProblemGuid",
        "ConsultationGuid",
        "IsConfidential",
        "AssociatedText",
    ]);
    for p in patients {
        let c = &p.clinical;
        let pid = braced(&p.id);
        let mut row = |id: String,
                       parent: String,
                       kind: &str,
                       meta: &im1_sim::record::ItemMeta,
                       date: Option<&PartialDate>,
                       concept: &im1_sim::record::Concept,
                       value: [String; 6],
                       problem: String,
                       note: Option<&str>| {
            let [v, unit, low, high, ab, text] = value;
            t.push(vec![
                id,
                parent,
                pid.clone(),
                cx.org.clone(),
                kind.into(),
                opt(date.map(|d| dates::day(d.first_day()))),
                opt(date.map(|d| precision(d).to_string())),
                local_date(meta.recorded_at),
                local_time(meta.recorded_at),
                cx.user(&meta.recorded_by),
                code(concept),
                concept.display.clone(),
                v,
                unit,
                low,
                high,
                ab,
                text,
                problem,
                opt(meta.consultation.as_ref().map(braced)),
                flag(meta.confidential),
                opt(note.map(str::to_string)),
            ]);
        };
        let none = || -> [String; 6] { Default::default() };
        for o in &c.observations {
            let (lo, hi) = o.range.unwrap_or((None, None));
            let value = match &o.value {
                ObservationValue::Quantity(q) => [
                    q.value_text(),
                    q.unit.clone(),
                    num(lo),
                    num(hi),
                    abnormal(o.interpretation),
                    String::new(),
                ],
                ObservationValue::Text(s) => [
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    abnormal(o.interpretation),
                    s.clone(),
                ],
                _ => none(),
            };
            let problem = opt(o.problem.as_ref().map(braced));
            row(
                braced(&o.meta.id),
                String::new(),
                "Value",
                &o.meta,
                Some(&o.effective),
                &o.code,
                value,
                problem.clone(),
                o.note.as_deref(),
            );
            if let ObservationValue::Components(parts) = &o.value {
                for (i, part) in parts.iter().enumerate() {
                    let (lo, hi) = part.range.unwrap_or((None, None));
                    let child = native_sub_id(Supplier::Emis, &o.meta.id, &format!("component-{i}"));
                    row(
                        format!("{{{child}}}"),
                        braced(&o.meta.id),
                        "Value",
                        &o.meta,
                        Some(&o.effective),
                        &part.code,
                        [
                            part.value.value_text(),
                            part.value.unit.clone(),
                            num(lo),
                            num(hi),
                            abnormal(part.interpretation),
                            String::new(),
                        ],
                        problem.clone(),
                        None,
                    );
                }
            }
        }
        for a in &c.allergies {
            row(
                braced(&a.meta.id),
                String::new(),
                "Allergy",
                &a.meta,
                a.onset.as_ref(),
                &a.code,
                none(),
                String::new(),
                a.note.as_deref(),
            );
        }
        for x in &c.immunisations {
            let text = x.batch.as_ref().map(|b| format!("Batch {b}"));
            let kind = if x.given {
                "Immunisation"
            } else {
                "ImmunisationNotGiven"
            };
            let note = x.not_given_reason.clone().or(text);
            row(
                braced(&x.meta.id),
                String::new(),
                kind,
                &x.meta,
                Some(&x.date),
                &x.procedure,
                none(),
                String::new(),
                note.as_deref(),
            );
        }
        for x in &c.problems {
            row(
                braced(&x.meta.id),
                String::new(),
                "Problem",
                &x.meta,
                Some(&x.onset),
                &x.code,
                none(),
                braced(&x.meta.id),
                x.note.as_deref(),
            );
        }
    }
    t
}

pub fn handle(e: &Emis, req: &SimRequest, path: &str) -> SimResponse {
    let q = Query::of(req);
    let since = match q.get("since") {
        None => None,
        Some(s) => match dates::parse_instant(s) {
            Some(t) => Some(t),
            None => return model_state("since", "The since field is not a valid date-time."),
        },
    };
    let ods = e.config.practice_ods.as_str();
    let changed: Option<Vec<Nid>> = since.map(|t| {
        let mut ids: Vec<Nid> = Vec::new();
        for c in e.world.changes_since_at(t, ods) {
            if !ids.contains(&c.patient) {
                ids.push(c.patient);
            }
        }
        ids
    });
    let high_water = e.world.last_change_at();
    let since_text = q.get("since").map(str::to_string);
    e.world.read(|r| {
        let cx = Ctx {
            r,
            ods,
            org: r.practice(ods).map(|p| braced(&p.id)).unwrap_or_default(),
        };
        let patients: Vec<&Patient> = r
            .patients
            .iter()
            .filter(|p| p.registration(ods).is_some())
            .filter(|p| changed.as_ref().is_none_or(|ids| ids.contains(&p.id)))
            .collect();
        if path == "extract" {
            let suffix = since_text
                .as_ref()
                .map(|s| {
                    format!(
                        "?since={}",
                        form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                    )
                })
                .unwrap_or_default();
            let files: Vec<Value> = TABLES
                .iter()
                .filter_map(|name| {
                    let t = build(name, &cx, &patients, &e.config.cdb)?;
                    Some(json!({
                        "Table": name,
                        "FileName": format!("{name}.csv"),
                        "Url": format!("/emis/bulk/v1/files/{name}.csv{suffix}"),
                        "RowCount": t.rows.len(),
                    }))
                })
                .collect();
            return ok(&json!({
                "Since": since_text,
                "HighWaterMark": high_water.map(dates::with_offset),
                "Files": files,
            }));
        }
        let Some(name) = path.strip_prefix("files/").and_then(|f| f.strip_suffix(".csv")) else {
            return message(
                StatusCode::NOT_FOUND,
                "No HTTP resource was found that matches the request URI.",
            );
        };
        match build(name, &cx, &patients, &e.config.cdb) {
            Some(t) => {
                let mut resp = Response::new(Bytes::from(t.csv()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                );
                resp
            }
            None => message(StatusCode::NOT_FOUND, "Unknown extract table"),
        }
    })
}
