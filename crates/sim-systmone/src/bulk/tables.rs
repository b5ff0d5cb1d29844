//! The extract's tables: one row per patient, name, contact, staff member, code, consultation (and its
//! section links), and clinical item, appointment and repeat request, with the ids the other surfaces use.

use super::Table;
use crate::dates::{day, instant, partial};
use crate::render::{all_items, tid, tsub, ItemRef};
use base64::Engine;
use im1_sim::record::codes::{scheme_code, Scheme};
use im1_sim::record::vocab::CodeSystem;
use im1_sim::record::*;

fn code_cols(c: &Concept) -> [String; 4] {
    if c.system == CodeSystem::Dmd {
        return [c.code.clone(), "DMD".into(), String::new(), c.display.clone()];
    }
    let sc = scheme_code(c);
    let scheme = if sc.scheme == Scheme::Ctv3 { "CTV3" } else { "SNOMED" };
    [sc.code, scheme.into(), c.code.clone(), c.display.clone()]
}

fn opt_partial(d: Option<&PartialDate>) -> [String; 2] {
    match d {
        Some(d) => {
            let (v, a) = partial(d);
            [v, a.to_string()]
        }
        None => [String::new(), String::new()],
    }
}

fn meta_cols(m: &ItemMeta) -> [String; 3] {
    [
        instant(m.recorded_at),
        tid(&m.recorded_by),
        if m.confidential { "Y" } else { "N" }.to_string(),
    ]
}

fn opt_id(n: Option<&Nid>) -> String {
    n.map(tid).unwrap_or_default()
}

fn row<const N: usize>(parts: &[&[String]]) -> Vec<String> {
    let mut v = Vec::with_capacity(N);
    for p in parts {
        v.extend(p.iter().cloned());
    }
    v
}

const CODE: [&str; 4] = ["Code", "CodeScheme", "Snomed", "Term"];

pub(super) fn tables(r: &Record, ods: &str) -> Vec<Table> {
    let mut patient = Table::new(
        "SRPatient",
        &[
            "RowIdentifier",
            "NHSNumber",
            "Title",
            "FirstName",
            "MiddleNames",
            "Surname",
            "DateBirth",
            "Gender",
            "DateDeath",
            "HouseName",
            "Street",
            "Locality",
            "Town",
            "County",
            "Postcode",
            "EthnicityCode",
            "EthnicityDescription",
            "DateRegistration",
            "IDUsualGP",
        ],
    );
    let mut prev = Table::new(
        "SRPatientPreviousName",
        &["IDPatient", "Title", "FirstName", "MiddleNames", "Surname", "DateEnd"],
    );
    let mut contact = Table::new("SRPatientContact", &["IDPatient", "ContactType", "Value"]);
    let mut problem = Table::new(
        "SRProblem",
        &[
            "RowIdentifier",
            "IDPatient",
            "IDEvent",
            "Date",
            "DateAccuracy",
            CODE[0],
            CODE[1],
            CODE[2],
            CODE[3],
            "Status",
            "Significance",
            "DateEnd",
            "DateEndAccuracy",
            "IDLinkedItems",
            "Notes",
            "DateRecorded",
            "IDRecordedBy",
            "Confidential",
        ],
    );
    let mut allergy = Table::new(
        "SRAllergy",
        &[
            "RowIdentifier",
            "IDPatient",
            "IDEvent",
            "Date",
            "DateAccuracy",
            CODE[0],
            CODE[1],
            CODE[2],
            CODE[3],
            "SubstanceCode",
            "SubstanceCodeScheme",
            "SubstanceSnomed",
            "SubstanceTerm",
            "Status",
            "DateEnd",
            "DateEndAccuracy",
            "Notes",
            "DateRecorded",
            "IDRecordedBy",
            "Confidential",
        ],
    );
    let mut reaction = Table::new(
        "SRAllergyReaction",
        &["IDAllergy", "IDPatient", CODE[0], CODE[1], CODE[2], CODE[3], "Severity"],
    );
    let mut medication = Table::new(
        "SRMedication",
        &[
            "RowIdentifier",
            "IDPatient",
            "IDEvent",
            "DateStart",
            "Dmd",
            "Term",
            "CourseType",
            "Status",
            "Dosage",
            "Quantity",
            "QuantityUnit",
            "DateEnd",
            "DateReview",
            "Requestable",
            "IDProblem",
            "DateRecorded",
            "IDRecordedBy",
            "Confidential",
        ],
    );
    let mut issue = Table::new(
        "SRMedicationIssue",
        &["RowIdentifier", "IDMedication", "IDPatient", "DateIssued", "Quantity"],
    );
    let mut observation = Table::new(
        "SRObservation",
        &[
            "RowIdentifier",
            "IDPatient",
            "IDEvent",
            "IDParent",
            "Date",
            "DateAccuracy",
            "Category",
            CODE[0],
            CODE[1],
            CODE[2],
            CODE[3],
            "Value",
            "Units",
            "TextValue",
            "RangeLow",
            "RangeHigh",
            "AbnormalFlag",
            "IDProblem",
            "Notes",
            "DateRecorded",
            "IDRecordedBy",
            "Confidential",
        ],
    );
    let mut immunisation = Table::new(
        "SRImmunisation",
        &[
            "RowIdentifier",
            "IDPatient",
            "IDEvent",
            "Date",
            "DateAccuracy",
            CODE[0],
            CODE[1],
            CODE[2],
            CODE[3],
            "VaccineDmd",
            "VaccineTerm",
            "Given",
            "NotGivenReason",
            "Batch",
            "DoseNumber",
            "DateRecorded",
            "IDRecordedBy",
            "Confidential",
        ],
    );
    let mut event = Table::new(
        "SREvent",
        &[
            "RowIdentifier",
            "IDPatient",
            "DateEvent",
            CODE[0],
            CODE[1],
            CODE[2],
            CODE[3],
            "Duration",
            "IDDoneBy",
            "Location",
            "DateRecorded",
            "IDRecordedBy",
            "Confidential",
        ],
    );
    let mut section = Table::new(
        "SREventSection",
        &["IDEvent", "IDPatient", "Position", "Heading", "IDItem"],
    );
    let mut document = Table::new(
        "SRDocument",
        &[
            "RowIdentifier",
            "IDPatient",
            "IDEvent",
            "Date",
            "DateAccuracy",
            CODE[0],
            CODE[1],
            CODE[2],
            CODE[3],
            "Title",
            "ContentType",
            "Size",
            "IDBinaryData",
            "IDAuthor",
            "ContentBase64",
            "DateRecorded",
            "IDRecordedBy",
            "Confidential",
        ],
    );
    let mut appointment = Table::new(
        "SRAppointment",
        &[
            "RowIdentifier",
            "IDPatient",
            "SessionId",
            "DateStart",
            "DateEnd",
            "SlotType",
            "Status",
            "Reason",
            "Telephone",
            "DateBooked",
            "CancellationReason",
        ],
    );
    let mut request = Table::new(
        "SRRepeatRequest",
        &[
            "RowIdentifier",
            "IDPatient",
            "DateRequested",
            "Status",
            "Notes",
            "IDMedications",
        ],
    );
    let mut staff = Table::new(
        "SRStaff",
        &[
            "RowIdentifier",
            "Title",
            "FirstName",
            "Surname",
            "Gender",
            "RegistrationNumber",
            "Roles",
        ],
    );
    let mut code = Table::new("SRCode", &["Code", "CodeScheme", "Term", "Snomed", "Dmd"]);

    let f = |x: &f64, q: &Quantity| format!("{:.*}", usize::from(q.decimals), x);
    for p in r.patients.iter().filter(|p| p.registration(ods).is_some()) {
        let pid = tid(&p.id);
        let reg = p.registration(ods);
        let n = &p.name;
        patient.rows.push(vec![
            pid.clone(),
            p.nhs_number.clone(),
            n.title.clone().unwrap_or_default(),
            n.given.first().cloned().unwrap_or_default(),
            n.given.get(1..).map(|m| m.join(" ")).unwrap_or_default(),
            n.family.clone(),
            day(p.birth_date),
            match p.gender {
                Gender::Female => "F",
                Gender::Male => "M",
                Gender::Other => "I",
                Gender::Unknown => "U",
            }
            .into(),
            p.deceased_at.map(instant).unwrap_or_default(),
            p.address.house.clone(),
            p.address.street.clone(),
            p.address.locality.clone().unwrap_or_default(),
            p.address.town.clone(),
            p.address.county.clone().unwrap_or_default(),
            p.address.postcode.clone(),
            p.ethnicity.as_ref().map(|e| e.code.to_string()).unwrap_or_default(),
            p.ethnicity.as_ref().map(|e| e.display.to_string()).unwrap_or_default(),
            reg.map(|g| day(g.registered_on)).unwrap_or_default(),
            reg.map(|g| tid(&g.usual_gp)).unwrap_or_default(),
        ]);
        for pn in &p.previous_names {
            let n = &pn.name;
            prev.rows.push(vec![
                pid.clone(),
                n.title.clone().unwrap_or_default(),
                n.given.first().cloned().unwrap_or_default(),
                n.given.get(1..).map(|m| m.join(" ")).unwrap_or_default(),
                n.family.clone(),
                day(pn.until),
            ]);
        }
        for t in &p.telecom {
            let (kind, value) = match t {
                Telecom::Phone {
                    value,
                    use_: ContactUse::Home,
                } => ("home", value),
                Telecom::Phone {
                    value,
                    use_: ContactUse::Mobile,
                } => ("mobile", value),
                Telecom::Phone {
                    value,
                    use_: ContactUse::Work,
                } => ("work", value),
                Telecom::Email { value } => ("email", value),
            };
            contact.rows.push(vec![pid.clone(), kind.into(), value.clone()]);
        }
        for item in all_items(&p.clinical) {
            let m = item.meta();
            let id = tid(&m.id);
            let ev = opt_id(m.consultation.as_ref());
            let meta = meta_cols(m);
            match item {
                ItemRef::Problem(x) => problem.rows.push(row::<18>(&[
                    &[id, pid.clone(), ev],
                    &opt_partial(Some(&x.onset)),
                    &code_cols(&x.code),
                    &[
                        format!("{:?}", x.status).to_lowercase(),
                        format!("{:?}", x.significance).to_lowercase(),
                    ],
                    &opt_partial(x.ended.as_ref()),
                    &[
                        x.linked.iter().map(tid).collect::<Vec<_>>().join(" "),
                        x.note.clone().unwrap_or_default(),
                    ],
                    &meta,
                ])),
                ItemRef::Allergy(x) => {
                    let sub = x.substance.as_ref().map(code_cols).unwrap_or_default();
                    allergy.rows.push(row::<20>(&[
                        &[id.clone(), pid.clone(), ev],
                        &opt_partial(x.onset.as_ref()),
                        &code_cols(&x.code),
                        &sub,
                        &[format!("{:?}", x.status).to_lowercase()],
                        &opt_partial(x.resolved_on.as_ref()),
                        &[x.note.clone().unwrap_or_default()],
                        &meta,
                    ]));
                    for re in &x.reactions {
                        reaction.rows.push(row::<7>(&[
                            &[id.clone(), pid.clone()],
                            &code_cols(&re.manifestation),
                            &[format!("{:?}", re.severity).to_lowercase()],
                        ]));
                    }
                }
                ItemRef::Medication(x) => {
                    medication.rows.push(row::<18>(&[
                        &[
                            id.clone(),
                            pid.clone(),
                            ev,
                            day(x.started_on),
                            x.code.code.clone(),
                            x.code.display.clone(),
                        ],
                        &[
                            format!("{:?}", x.kind),
                            format!("{:?}", x.status).to_lowercase(),
                            x.dosage.clone(),
                            x.quantity.to_string(),
                            x.quantity_unit.clone(),
                            x.ended_at.map(instant).unwrap_or_default(),
                            x.review_on.map(day).unwrap_or_default(),
                            if x.requestable { "Y" } else { "N" }.into(),
                            opt_id(x.problem.as_ref()),
                        ],
                        &meta,
                    ]));
                    for i in &x.issues {
                        issue.rows.push(vec![
                            tid(&i.id),
                            id.clone(),
                            pid.clone(),
                            instant(i.issued_at),
                            i.quantity.to_string(),
                        ]);
                    }
                }
                ItemRef::Observation(x) => {
                    let flag =
                        |i: Option<Interpretation>| i.map(|i| format!("{i:?}").to_uppercase()).unwrap_or_default();
                    let (value, units, text, lo, hi) = match &x.value {
                        ObservationValue::Quantity(q) => {
                            let (l, h) = x.range.unwrap_or((None, None));
                            (
                                q.value_text(),
                                q.unit.clone(),
                                String::new(),
                                l.map(|v| f(&v, q)).unwrap_or_default(),
                                h.map(|v| f(&v, q)).unwrap_or_default(),
                            )
                        }
                        ObservationValue::Text(t) => {
                            (String::new(), String::new(), t.clone(), String::new(), String::new())
                        }
                        _ => Default::default(),
                    };
                    observation.rows.push(row::<22>(&[
                        &[id.clone(), pid.clone(), ev.clone(), String::new()],
                        &opt_partial(Some(&x.effective)),
                        &[format!("{:?}", x.kind)],
                        &code_cols(&x.code),
                        &[
                            value,
                            units,
                            text,
                            lo,
                            hi,
                            flag(x.interpretation),
                            opt_id(x.problem.as_ref()),
                            x.note.clone().unwrap_or_default(),
                        ],
                        &meta,
                    ]));
                    if let ObservationValue::Components(parts) = &x.value {
                        for (k, c) in parts.iter().enumerate() {
                            let (l, h) = c.range.unwrap_or((None, None));
                            observation.rows.push(row::<22>(&[
                                &[
                                    tsub(&m.id, &format!("component-{k}")),
                                    pid.clone(),
                                    ev.clone(),
                                    id.clone(),
                                ],
                                &opt_partial(Some(&x.effective)),
                                &[format!("{:?}", x.kind)],
                                &code_cols(&c.code),
                                &[
                                    c.value.value_text(),
                                    c.value.unit.clone(),
                                    String::new(),
                                    l.map(|v| f(&v, &c.value)).unwrap_or_default(),
                                    h.map(|v| f(&v, &c.value)).unwrap_or_default(),
                                    flag(c.interpretation),
                                    String::new(),
                                    String::new(),
                                ],
                                &meta,
                            ]));
                        }
                    }
                }
                ItemRef::Immunisation(x) => immunisation.rows.push(row::<18>(&[
                    &[id, pid.clone(), ev],
                    &opt_partial(Some(&x.date)),
                    &code_cols(&x.procedure),
                    &[
                        x.vaccine.as_ref().map(|v| v.code.clone()).unwrap_or_default(),
                        x.vaccine.as_ref().map(|v| v.display.clone()).unwrap_or_default(),
                        if x.given { "Y" } else { "N" }.into(),
                        x.not_given_reason.clone().unwrap_or_default(),
                        x.batch.clone().unwrap_or_default(),
                        x.dose_number.map(|d| d.to_string()).unwrap_or_default(),
                    ],
                    &meta,
                ])),
                ItemRef::Document(x) => document.rows.push(row::<18>(&[
                    &[id, pid.clone(), ev],
                    &opt_partial(Some(&x.date)),
                    &code_cols(&x.kind),
                    &[
                        x.title.clone(),
                        x.mime_type.clone(),
                        x.content.len().to_string(),
                        tsub(&m.id, "binary"),
                        tid(&x.author),
                        base64::engine::general_purpose::STANDARD.encode(&x.content),
                    ],
                    &meta,
                ])),
            }
        }
        for c in &p.clinical.consultations {
            let cid = tid(&c.meta.id);
            event.rows.push(row::<13>(&[
                &[cid.clone(), pid.clone(), instant(c.started_at)],
                &code_cols(&c.kind),
                &[c.duration_minutes.to_string(), tid(&c.practitioner), c.location.clone()],
                &meta_cols(&c.meta),
            ]));
            let mut pos = 0;
            for s in &c.sections {
                for i in &s.items {
                    pos += 1;
                    section.rows.push(vec![
                        cid.clone(),
                        pid.clone(),
                        pos.to_string(),
                        s.heading.clone(),
                        tid(i),
                    ]);
                }
            }
        }
        for a in r.appointments_of(ods, &p.id) {
            let slot = r.slot(&a.slot);
            appointment.rows.push(vec![
                tid(&a.id),
                pid.clone(),
                slot.and_then(|s| r.session(&s.session))
                    .map(|s| s.number.to_string())
                    .unwrap_or_default(),
                slot.map(|s| instant(s.starts_at)).unwrap_or_default(),
                slot.map(|s| instant(s.ends_at)).unwrap_or_default(),
                slot.map(|s| s.kind.clone()).unwrap_or_default(),
                format!("{:?}", a.status),
                a.reason.clone().unwrap_or_default(),
                a.telephone.clone().unwrap_or_default(),
                instant(a.booked_at),
                a.cancellation_reason.clone().unwrap_or_default(),
            ]);
        }
        for q in r.prescription_requests_of(ods, &p.id) {
            request.rows.push(vec![
                tid(&q.id),
                pid.clone(),
                instant(q.requested_at),
                format!("{:?}", q.status),
                q.comment.clone().unwrap_or_default(),
                q.courses.iter().map(tid).collect::<Vec<_>>().join(" "),
            ]);
        }
    }
    for s in r
        .practitioners
        .iter()
        .filter(|s| s.roles.iter().any(|x| x.practice == ods))
    {
        staff.rows.push(vec![
            tid(&s.id),
            s.name.title.clone().unwrap_or_default(),
            s.name.given.join(" "),
            s.name.family.clone(),
            format!("{:?}", s.gender),
            s.registration_number.clone(),
            s.roles
                .iter()
                .filter(|x| x.practice == ods)
                .map(|x| format!("{:?}", x.role))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    for e in Vocabulary::get().entries() {
        let [c, scheme, snomed, term] = code_cols(&e.concept());
        let dmd = if e.system == CodeSystem::Dmd {
            e.code.clone()
        } else {
            String::new()
        };
        let c = if scheme == "DMD" { String::new() } else { c };
        code.rows.push(vec![c, scheme, term, snomed, dmd]);
    }
    vec![
        patient,
        prev,
        contact,
        staff,
        code,
        event,
        section,
        problem,
        allergy,
        reaction,
        medication,
        issue,
        observation,
        immunisation,
        document,
        appointment,
        request,
    ]
}
