//! The synthetic record: determinism, identities, vocabulary, coverage of every category, writes and the
//! change log.

use im1_sim::record::codes::{concept_for_scheme_code, scheme_code, CodeIdTable, Scheme, CODE_ID_BASE};
use im1_sim::record::vocab::{Category, CodeSystem, Vocabulary};
use im1_sim::record::*;
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};

const TODAY: time::Date = date!(2025 - 03 - 04);

fn record(seed: u64, patients: usize) -> Record {
    generate(&GenerateOptions {
        seed,
        patients,
        today: TODAY,
    })
}

fn world_at(now: OffsetDateTime) -> std::sync::Arc<World> {
    World::new(record(1, 50), Clock::Fixed(now))
}

#[test]
fn same_seed_serialises_identically_and_seeds_differ() {
    let a = serde_json::to_string(&record(1, 50)).expect("serialise");
    let b = serde_json::to_string(&record(1, 50)).expect("serialise");
    assert_eq!(a, b);
    let c = serde_json::to_string(&record(2, 50)).expect("serialise");
    assert_ne!(a, c);
}

#[test]
fn fewer_patients_are_a_prefix_of_more() {
    let small = record(5, 10);
    let large = record(5, 50);
    for (a, b) in small.patients.iter().zip(&large.patients) {
        assert_eq!(serde_json::to_string(a).ok(), serde_json::to_string(b).ok());
    }
}

#[test]
fn nhs_numbers_are_valid_test_range_and_unique() {
    let r = record(3, 200);
    let mut seen = std::collections::BTreeSet::new();
    for p in &r.patients {
        assert!(nhs::is_valid(&p.nhs_number), "{}", p.nhs_number);
        assert!(nhs::is_test_range(&p.nhs_number), "{}", p.nhs_number);
        assert!(seen.insert(p.nhs_number.clone()), "duplicate {}", p.nhs_number);
    }
}

#[test]
fn patient_zero_and_the_proxy_child_exist() {
    for seed in [1, 2, 99] {
        let r = record(seed, 50);
        let alex = r.patient_by_nhs_number(PATIENT_NHS_NUMBER).expect("9000000009");
        assert_eq!(alex.name.display(), "Ms Alex Tester");
        assert_eq!(alex.birth_date, date!(1985 - 04 - 12));
        let child = r.patient_by_nhs_number(CHILD_NHS_NUMBER).expect("9000000017");
        let links = r.proxied_by(&alex.id);
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].patient, child.id);
        assert!(TODAY.year() - child.birth_date.year() < 16, "a child");
        for ods in PRACTICE_ODS {
            assert!(alex.registration(ods).is_some() && child.registration(ods).is_some());
            assert!(r.credentials_for(ods, PATIENT_NHS_NUMBER).is_some());
        }
    }
}

#[test]
fn every_patient_is_registered_at_all_three_practices() {
    let r = record(1, 50);
    assert_eq!(
        r.practices.iter().map(|p| p.ods.as_str()).collect::<Vec<_>>(),
        PRACTICE_ODS
    );
    for p in &r.patients {
        for ods in PRACTICE_ODS {
            let reg = p.registration(ods).expect("registered");
            assert!(r.practitioner(&reg.usual_gp).is_some());
        }
    }
}

#[test]
fn every_code_used_is_in_the_vocabulary() {
    let r = record(1, 50);
    let vocab = Vocabulary::get();
    let concepts = r.concepts();
    assert!(concepts.len() > 500);
    for c in concepts {
        assert!(vocab.contains(c), "{c:?} is not a vocabulary entry");
    }
}

#[test]
fn every_category_of_content_exists_in_the_default_fifty() {
    let r = record(1, 50);
    let all = |f: &dyn Fn(&Patient) -> bool| r.patients.iter().any(f);
    // Demographics
    assert!(all(&|p| p.name.title.is_some() && !p.previous_names.is_empty()));
    assert!(all(&|p| p.deceased_at.is_some()));
    assert!(all(&|p| p.ethnicity.is_some()));
    assert!(all(&|p| p.gender == Gender::Male) && all(&|p| p.gender == Gender::Female));
    assert!(all(&|p| p.telecom.iter().any(|t| matches!(t, Telecom::Email { .. }))));
    // Allergies
    assert!(all(&|p| p.clinical.allergies.iter().any(|a| !a.reactions.is_empty())));
    assert!(all(&|p| p
        .clinical
        .allergies
        .iter()
        .any(|a| a.status == AllergyStatus::Resolved)));
    assert!(all(&|p| p
        .clinical
        .allergies
        .iter()
        .any(|a| a.reactions.iter().any(|x| x.severity == Severity::Severe))));
    // Problems
    assert!(all(&|p| p.clinical.problems.iter().any(|x| x.status
        == ProblemStatus::Active
        && x.significance == Significance::Major)));
    assert!(all(&|p| p
        .clinical
        .problems
        .iter()
        .any(|x| x.status == ProblemStatus::Past && x.ended.is_some())));
    assert!(all(&|p| p.clinical.problems.iter().any(|x| {
        x.linked
            .iter()
            .any(|l| p.clinical.observations.iter().any(|o| &o.meta.id == l))
    })));
    // Medication
    assert!(all(&|p| p
        .clinical
        .medications
        .iter()
        .any(|m| m.kind == CourseKind::Acute)));
    assert!(all(&|p| p
        .clinical
        .medications
        .iter()
        .any(|m| m.kind == CourseKind::Repeat
            && m.issues.len() > 1
            && m.requestable)));
    assert!(all(&|p| p
        .clinical
        .medications
        .iter()
        .any(|m| m.status == CourseStatus::Discontinued)));
    assert!(r
        .patients
        .iter()
        .flat_map(|p| &p.clinical.medications)
        .all(|m| m.code.system == CodeSystem::Dmd && !m.dosage.is_empty()));
    // Observations
    assert!(all(&|p| p.clinical.observations.iter().any(
        |o| matches!(&o.value, ObservationValue::Components(c) if c.len() == 2)
    )));
    assert!(all(&|p| p.clinical.observations.iter().any(|o| o.kind
        == ObservationKind::VitalSign
        && matches!(o.value, ObservationValue::Quantity(_)))));
    assert!(all(&|p| p
        .clinical
        .observations
        .iter()
        .any(|o| o.kind == ObservationKind::Laboratory
            && o.range.is_some()
            && o.interpretation == Some(Interpretation::High))));
    assert!(all(&|p| p.clinical.observations.iter().any(|o| o.kind
        == ObservationKind::Laboratory
        && matches!(o.value, ObservationValue::Text(_)))));
    // Immunisations
    assert!(all(&|p| p
        .clinical
        .immunisations
        .iter()
        .any(|i| i.given && i.batch.is_some() && i.vaccine.is_some())));
    assert!(all(&|p| p
        .clinical
        .immunisations
        .iter()
        .any(|i| !i.given && i.not_given_reason.is_some())));
    // Consultations link their entries
    for p in &r.patients {
        for c in &p.clinical.consultations {
            for id in c.sections.iter().flat_map(|s| &s.items) {
                let c_ = &p.clinical;
                let found = c_.observations.iter().any(|x| &x.meta.id == id)
                    || c_.problems.iter().any(|x| &x.meta.id == id)
                    || c_.medications.iter().any(|x| &x.meta.id == id)
                    || c_.immunisations.iter().any(|x| &x.meta.id == id);
                assert!(found, "{id} in a consultation section does not exist");
            }
        }
    }
    assert!(all(&|p| p.clinical.consultations.iter().any(|c| c.sections.len() >= 2)));
    // Documents with real content
    let docs: Vec<&Document> = r.patients.iter().flat_map(|p| &p.clinical.documents).collect();
    assert!(docs
        .iter()
        .any(|d| d.mime_type == "application/pdf" && d.content.starts_with(b"%PDF-1.4")));
    assert!(docs
        .iter()
        .any(|d| d.mime_type == "text/plain" && !d.content.is_empty()));
    // Partial dates, confidentiality, opt-out, switches
    let onsets: Vec<PartialDate> = r
        .patients
        .iter()
        .flat_map(|p| p.clinical.problems.iter().map(|x| x.onset))
        .collect();
    for precision in [Precision::Year, Precision::YearMonth, Precision::Day] {
        assert!(onsets.iter().any(|d| d.precision() == precision), "{precision:?}");
    }
    assert!(all(&|p| p.clinical.problems.iter().any(|x| x.meta.confidential)));
    assert!(all(&|p| p.clinical.documents.iter().any(|x| x.meta.confidential)));
    assert!(all(&|p| p.has_type1_opt_out()));
    assert!(all(&|p| p.registrations.iter().all(|r| !r.services.appointments)));
    assert!(all(&|p| p.registrations.iter().all(|r| !r.services.prescriptions)));
    // Appointment book, requests, messages at every practice
    for ods in PRACTICE_ODS {
        let now = datetime!(2025-03-04 08:00 UTC);
        let free = r.free_slots_between(ods, now, now, now + Duration::days(28)).count();
        let booked = r
            .slots_between(ods, now, now + Duration::days(28))
            .filter(|s| s.appointment.is_some())
            .count();
        assert!(free > 100 && booked > 3, "{ods}: {free} free, {booked} booked");
        assert!(r
            .appointments
            .iter()
            .any(|a| a.practice == ods && a.status == AppointmentStatus::Booked));
        assert!(r
            .appointments
            .iter()
            .any(|a| a.practice == ods && a.status == AppointmentStatus::Attended));
        assert!(r.prescription_requests.iter().any(|q| q.practice == ods));
        assert!(r
            .messages
            .iter()
            .any(|m| m.practice == ods && m.direction == Direction::FromPractice));
    }
}

#[test]
fn the_three_practices_hold_the_same_book() {
    let r = record(4, 30);
    let times = |ods: &str| -> Vec<_> {
        r.slots
            .iter()
            .filter(|s| s.practice == ods)
            .map(|s| (s.starts_at, s.appointment.is_some()))
            .collect()
    };
    assert_eq!(times("Y90001"), times("Y90002"));
    assert_eq!(times("Y90001"), times("Y90003"));
}

#[test]
fn native_ids_have_each_supplier_shape_and_are_stable() {
    let nid = Nid("P0000-ALG-01".into());
    let emis = native_id(Supplier::Emis, &nid);
    let tpp = native_id(Supplier::SystmOne, &nid);
    let medicus = native_id(Supplier::Medicus, &nid);
    assert_eq!(emis.len(), 36);
    assert_eq!(emis, emis.to_ascii_uppercase());
    assert!(uuid::Uuid::parse_str(&emis).is_ok());
    assert_eq!(tpp.len(), 16);
    assert!(tpp.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(medicus, medicus.to_ascii_lowercase());
    assert!(uuid::Uuid::parse_str(&medicus).is_ok());
    assert_ne!(emis.to_ascii_lowercase(), medicus, "suppliers get unrelated ids");
    assert_eq!(native_id(Supplier::Emis, &nid), emis);
    assert_ne!(native_sub_id(Supplier::Medicus, &nid, "file"), medicus);
}

#[test]
fn world_resolves_native_ids() {
    let world = world_at(datetime!(2025-03-04 08:00 UTC));
    let (pid, slot) = world.read(|r| (r.patients[0].id.clone(), r.slots[5].id.clone()));
    for s in Supplier::ALL {
        assert_eq!(world.resolve(s, &native_id(s, &pid)), Some(pid.clone()));
        assert_eq!(world.resolve(s, &native_id(s, &slot)), Some(slot.clone()));
    }
    assert_eq!(world.resolve(Supplier::Emis, "not-an-id"), None);
}

#[test]
fn code_id_table_round_trips_and_carries_legacy_codes() {
    let table = CodeIdTable::get();
    let vocab = Vocabulary::get();
    assert_eq!(table.rows().len(), vocab.entries().len());
    for (i, e) in vocab.entries().iter().enumerate() {
        let row = table.by_concept_code(&e.code).expect("row");
        assert_eq!(row.code_id, CODE_ID_BASE + i as i64);
        assert_eq!(table.concept(row.code_id), Some(e.concept()));
        match e.system {
            CodeSystem::Snomed => {
                assert_eq!(row.snomed_concept_id.as_deref(), Some(e.code.as_str()))
            }
            CodeSystem::Dmd => assert_eq!(row.dmd_product_id.as_deref(), Some(e.code.as_str())),
        }
    }
    let asthma = table.by_concept_code("195967001").expect("asthma");
    assert_eq!(asthma.read_term_id.as_deref(), Some("H33.."));
    let t2dm = table.by_concept_code("44054006").expect("t2dm");
    assert_eq!(t2dm.read_term_id.as_deref(), Some("C10F.00"));
    assert!(table.by_code_id(CODE_ID_BASE - 1).is_none());
    assert!(table.by_code_id(CODE_ID_BASE + 10_000).is_none());
    let json = serde_json::to_value(asthma).expect("json");
    assert!(
        json.get("snomed_description_id").is_none(),
        "no invented description ids"
    );
}

#[test]
fn ctv3_where_known_else_snomed() {
    let vocab = Vocabulary::get();
    let asthma = vocab.concept("195967001").expect("asthma");
    assert_eq!(scheme_code(&asthma).scheme, Scheme::Ctv3);
    assert_eq!(scheme_code(&asthma).code, "H33..");
    assert_eq!(concept_for_scheme_code(Scheme::Ctv3, "H33.."), Some(asthma));
    let weight = vocab.concept("27113001").expect("weight");
    assert_eq!(scheme_code(&weight).scheme, Scheme::Snomed);
    let amlodipine = vocab.concept("319283006").expect("amlodipine");
    assert_eq!(scheme_code(&amlodipine).scheme, Scheme::Dmd);
    assert_eq!(vocab.category(Category::ConsentOptOut).count(), 2);
}

#[test]
fn booking_takes_a_slot_and_cancelling_frees_it() {
    let now = datetime!(2025-03-04 08:00 UTC);
    let world = world_at(now);
    let (pid, slot) = world.read(|r| {
        let pid = r.patients[0].id.clone();
        let slot = r
            .free_slots_between("Y90001", now, now, now + Duration::days(7))
            .next()
            .map(|s| s.id.clone());
        (pid, slot.expect("a free slot"))
    });
    let booking = NewBooking {
        practice: "Y90001".into(),
        patient: pid.clone(),
        slot: slot.clone(),
        reason: Some("Sore throat".into()),
        telephone: None,
    };
    let appt = world.book_slot(booking.clone()).expect("booked");
    assert!(world.read(|r| r.slot(&slot).and_then(|s| s.appointment.clone())) == Some(appt.id.clone()));
    assert_eq!(world.book_slot(booking.clone()).err(), Some(WriteError::SlotTaken));
    // The same slot number at another practice is a different slot.
    let other = world.read(|r| {
        r.slots
            .iter()
            .find(|s| s.practice == "Y90002" && s.starts_at == r.slot(&slot).map(|x| x.starts_at).unwrap_or(now))
            .map(|s| s.id.clone())
    });
    assert!(world.read(|r| other
        .as_ref()
        .and_then(|o| r.slot(o))
        .is_some_and(|s| s.appointment.is_none())));
    world
        .cancel_appointment("Y90001", &appt.id, Some("No longer required".into()))
        .expect("cancelled");
    assert!(world.read(|r| r.slot(&slot).is_some_and(|s| s.appointment.is_none())));
    assert_eq!(
        world.cancel_appointment("Y90001", &appt.id, None).err(),
        Some(WriteError::AlreadyCancelled)
    );
    assert!(world.book_slot(booking).is_ok(), "free again");
    // Past slots and switched-off services are refused.
    let past = world.read(|r| {
        r.slots
            .iter()
            .find(|s| s.practice == "Y90001" && s.starts_at < now && s.appointment.is_none())
            .map(|s| s.id.clone())
    });
    let past = NewBooking {
        practice: "Y90001".into(),
        patient: pid,
        slot: past.expect("past slot"),
        reason: None,
        telephone: None,
    };
    assert_eq!(world.book_slot(past).err(), Some(WriteError::SlotInPast));
    let p4 = world.read(|r| r.patients[4].id.clone());
    let b4 = NewBooking {
        practice: "Y90001".into(),
        patient: p4,
        slot: slot.clone(),
        reason: None,
        telephone: None,
    };
    assert_eq!(
        world.book_slot(b4).err(),
        Some(WriteError::ServiceDisabled(Service::Appointments))
    );
}

#[test]
fn clinical_writes_appear_in_the_next_read_and_in_the_change_log() {
    let now = datetime!(2025-03-04 08:00 UTC);
    let world = world_at(now);
    let vocab = Vocabulary::get();
    let pid = world.read(|r| r.patients[0].id.clone());
    let before = world.read(|r| r.patient(&pid).map(|p| p.clinical.observations.len()).unwrap_or(0));
    let obs = NewObservation::body_weight(70.1, date!(2025 - 03 - 04)).expect("weight");
    let id = world.file_observation(&pid, obs.clone()).expect("filed");
    let after = world.read(|r| r.patient(&pid).map(|p| p.clinical.observations.len()).unwrap_or(0));
    assert_eq!(after, before + 1);
    assert!(world
        .resolve(Supplier::Medicus, &native_id(Supplier::Medicus, &id))
        .is_some());
    let changes = world.changes_since(now - Duration::seconds(1));
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            changes[0].area,
            changes[0].nhs_number.as_str(),
            changes[0].practice.as_deref()
        ),
        (ChangeArea::Record, PATIENT_NHS_NUMBER, None)
    );

    // An unknown code is refused, and a consultation with one bad entry files nothing.
    let mut bad = obs.clone();
    bad.code.code = "123456789".into();
    assert!(matches!(
        world.file_observation(&pid, bad.clone()),
        Err(WriteError::UnknownCode(_))
    ));
    let con = NewConsultation {
        kind: vocab.concept("185202000").expect("surgery"),
        started_at: None,
        duration_minutes: 10,
        practitioner: None,
        location: "Main surgery".into(),
        sections: vec![NewSection {
            heading: "Examination".into(),
            entries: vec![NewEntry::Observation(obs.clone()), NewEntry::Observation(bad)],
        }],
    };
    assert!(matches!(
        world.file_consultation(&pid, con.clone()),
        Err(WriteError::InvalidEntry {
            section: 0,
            entry: 1,
            ..
        })
    ));
    assert_eq!(
        world.read(|r| r.patient(&pid).map(|p| p.clinical.observations.len())),
        Some(after)
    );

    let mut good = con;
    good.sections[0].entries.pop();
    good.sections.push(NewSection {
        heading: "Problems".into(),
        entries: vec![NewEntry::Problem(NewProblem {
            code: vocab.concept("15805002").expect("sinusitis"),
            onset: PartialDate::Day(date!(2025 - 03 - 01)),
            status: ProblemStatus::Active,
            significance: Significance::Minor,
            note: None,
            recorded_by: None,
        })],
    });
    let filed = world.file_consultation(&pid, good).expect("filed");
    assert_eq!(filed.items.len(), 2);
    world.read(|r| {
        let p = r.patient(&pid).expect("patient");
        let c = p
            .clinical
            .consultations
            .iter()
            .find(|c| c.meta.id == filed.id)
            .expect("consultation");
        assert_eq!(
            c.sections.iter().flat_map(|s| s.items.clone()).collect::<Vec<_>>(),
            filed.items
        );
    });
    let allergy = NewAllergy {
        code: vocab.concept("293586001").expect("aspirin"),
        onset: Some(PartialDate::Year(2020)),
        reactions: vec![Reaction {
            manifestation: vocab.concept("64305001").expect("urticaria"),
            severity: Severity::Mild,
        }],
        note: None,
        recorded_by: None,
    };
    world.file_allergy(&pid, allergy).expect("allergy");
    let doc = NewDocument {
        kind: vocab.concept("25611000000107").expect("referral"),
        title: "Referral".into(),
        date: PartialDate::Day(date!(2025 - 03 - 04)),
        mime_type: "text/plain".into(),
        content: b"hello".to_vec(),
        recorded_by: None,
    };
    world.file_document(&pid, doc).expect("document");
    let all = world.changes_since(now - Duration::seconds(1));
    assert_eq!(all.len(), 4);
    assert!(
        all.windows(2).all(|w| w[0].at < w[1].at && w[0].seq < w[1].seq),
        "strictly increasing"
    );
    assert!(world.changes_since(all[3].at).is_empty());
    assert_eq!(world.changes_since(all[1].at).len(), 2);
}

#[test]
fn prescription_requests_messages_and_switches() {
    let now = datetime!(2025-03-04 08:00 UTC);
    let world = world_at(now);
    let (pid, course, p6, p6_course) = world.read(|r| {
        let p = &r.patients[0];
        let course = p
            .clinical
            .medications
            .iter()
            .find(|m| m.requestable)
            .map(|m| m.meta.id.clone())
            .expect("requestable");
        let p6 = &r.patients[6];
        let c6 = p6
            .clinical
            .medications
            .first()
            .map(|m| m.meta.id.clone())
            .unwrap_or_else(|| course.clone());
        (p.id.clone(), course, p6.id.clone(), c6)
    });
    let req = world
        .create_prescription_request(
            "Y90003",
            &pid,
            std::slice::from_ref(&course),
            Some("Usual pharmacy".into()),
        )
        .expect("request");
    assert_eq!(req.status, RequestStatus::Requested);
    assert!(world.read(|r| r.prescription_requests_of("Y90003", &pid).any(|q| q.id == req.id)));
    assert!(matches!(
        world.create_prescription_request("Y90003", &pid, &[Nid("nope".into())], None),
        Err(WriteError::CourseNotFound(_))
    ));
    assert_eq!(
        world
            .create_prescription_request("Y90003", &p6, &[p6_course], None)
            .err(),
        Some(WriteError::ServiceDisabled(Service::Prescriptions))
    );
    world
        .set_practice_service("Y90002", Service::Prescriptions, false)
        .expect("switch");
    assert_eq!(
        world.create_prescription_request("Y90002", &pid, &[course], None).err(),
        Some(WriteError::ServiceDisabled(Service::Prescriptions))
    );
    assert!(!world.read(|r| r.service_allowed("Y90002", &pid, Service::Prescriptions)));
    let msg = world
        .send_message(NewMessage {
            practice: "Y90001".into(),
            patient: pid.clone(),
            direction: Direction::ToPractice,
            subject: "Hi".into(),
            body: "Hello".into(),
        })
        .expect("message");
    assert_eq!(msg.sender, "Ms Alex Tester");
    assert!(world.read(|r| r.messages_of("Y90001", &pid).any(|m| m.id == msg.id)));
    let areas: Vec<_> = world
        .changes_since(now - Duration::seconds(1))
        .iter()
        .map(|c| (c.area, c.practice.clone()))
        .collect();
    assert_eq!(areas, vec![(ChangeArea::Prescriptions, Some("Y90003".to_string()))]);
    assert_eq!(world.changes_since_at(now - Duration::seconds(1), "Y90001").len(), 0);
}

#[test]
fn change_log_starts_with_recent_history() {
    let world = world_at(datetime!(2025-03-04 08:00 UTC));
    let seeded = world.changes_since(datetime!(2025-02-01 00:00 UTC));
    assert!(!seeded.is_empty());
    assert!(seeded.iter().any(|c| c.area == ChangeArea::Appointments));
    assert!(seeded.iter().any(|c| c.area == ChangeArea::Record));
}

#[test]
fn credentials_have_each_supplier_shape_and_follow_the_seed() {
    let r = record(1, 50);
    let again = record(1, 50);
    let other = record(2, 50);
    for c in &r.credentials {
        match &c.secret {
            LinkageSecret::AccountLinkageKey {
                account_id,
                linkage_key,
                ods_code,
            } => {
                assert_eq!((c.practice.as_str(), ods_code.as_str()), ("Y90001", "Y90001"));
                assert!(account_id.len() == 10 && account_id.bytes().all(|b| b.is_ascii_digit()));
                assert_eq!(linkage_key.len(), 15);
            }
            LinkageSecret::AccountPassphrase { account_id, passphrase } => {
                assert_eq!(c.practice, "Y90002");
                assert_eq!(account_id.len(), 9);
                assert_eq!(passphrase.len(), 9);
                assert_eq!(&passphrase[4..5], "-");
            }
            LinkageSecret::LinkageToken { token } => {
                assert_eq!(c.practice, "Y90003");
                assert!(token.starts_with("y90003-") && token.len() == 20, "{token}");
            }
        }
    }
    assert_eq!(
        serde_json::to_string(&r.credentials).ok(),
        serde_json::to_string(&again.credentials).ok()
    );
    assert_ne!(r.credentials[0].secret, other.credentials[0].secret);
    let living = r.patients.iter().filter(|p| p.deceased_at.is_none()).count();
    assert_eq!(r.credentials.len(), living * 3);
}

#[test]
fn fifty_patients_generate_quickly() {
    let start = std::time::Instant::now();
    let r = record(11, 50);
    let elapsed = start.elapsed();
    let world_start = std::time::Instant::now();
    let world = World::new(r.clone(), Clock::System);
    eprintln!("generate: {elapsed:?}, world index: {:?}", world_start.elapsed());
    drop(world);
    assert_eq!(r.patients.len(), 50);
    // Generous in debug builds; the release build does this in a few milliseconds.
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn pending_prescription_requests_can_be_cancelled_once() {
    let now = datetime!(2025-03-04 08:00 UTC);
    let world = world_at(now);
    let (pid, course) = world.read(|r| {
        let p = &r.patients[0];
        let course = p
            .clinical
            .medications
            .iter()
            .find(|m| m.requestable)
            .map(|m| m.meta.id.clone());
        (p.id.clone(), course.expect("requestable"))
    });
    let req = world
        .create_prescription_request("Y90003", &pid, std::slice::from_ref(&course), None)
        .expect("request");
    let cancelled = world
        .cancel_prescription_request("Y90003", &pid, &req.id)
        .expect("cancel");
    assert_eq!(cancelled.status, RequestStatus::Cancelled);
    assert!(world.read(|r| r
        .prescription_requests_of("Y90003", &pid)
        .any(|q| q.id == req.id && q.status == RequestStatus::Cancelled)));
    assert!(matches!(
        world.cancel_prescription_request("Y90003", &pid, &req.id),
        Err(WriteError::Invalid(m)) if m.contains("not cancellable")
    ));
    assert!(matches!(
        world.cancel_prescription_request("Y90003", &pid, &Nid("nope".into())),
        Err(WriteError::Invalid(m)) if m.contains("not found")
    ));
    let areas: Vec<_> = world
        .changes_since(now - Duration::seconds(1))
        .iter()
        .map(|c| c.area)
        .collect();
    assert_eq!(areas, vec![ChangeArea::Prescriptions, ChangeArea::Prescriptions]);
}

#[test]
fn marking_a_message_read() {
    let world = world_at(datetime!(2025-03-03 10:00 UTC));
    let (pid, msg) = world.read(|r| {
        let p = r.patient_by_nhs_number(PATIENT_NHS_NUMBER).expect("patient 0");
        let m = r.messages_of("Y90002", &p.id).find(|m| !m.read).map(|m| m.id.clone());
        (p.id.clone(), m.expect("an unread message"))
    });
    let marked = world.mark_message_read("Y90002", &pid, &msg).expect("marked");
    assert!(marked.read);
    assert!(world.read(|r| r.messages_of("Y90002", &pid).any(|m| m.id == msg && m.read)));
    assert!(world.mark_message_read("Y90002", &pid, &msg).is_ok(), "again is fine");
    assert!(matches!(
        world.mark_message_read("Y90001", &pid, &msg),
        Err(WriteError::Invalid(_))
    ));
}

#[test]
fn nothing_is_recorded_from_today_on_and_repeats_are_issued_every_28_days_from_their_start() {
    let record = record(1, 50);
    let midnight = TODAY.midnight().assume_utc();
    let mut repeats = 0;
    for patient in &record.patients {
        let c = &patient.clinical;
        let courses = c.medications.iter().map(|m| m.meta.recorded_at);
        let recorded = c.change_times().chain(courses);
        // A time later today could still be to come when the record is read.
        for at in recorded {
            assert!(at < midnight, "{}: recorded at {at}", patient.nhs_number);
        }
        for course in c.medications.iter().filter(|m| m.kind == CourseKind::Repeat) {
            let issued: Vec<time::Date> = course.issues.iter().map(|i| i.issued_at.date()).collect();
            // Up to its end, else yesterday (or the day of death).
            let until = patient.deceased_at.map_or(TODAY - Duration::days(1), |at| at.date());
            let last = course.ended_at.map_or(until, |at| at.date());
            // From the day it started, every 28 days: so many issues as its years give.
            let expected: Vec<time::Date> = (0..)
                .map(|k| course.started_on + Duration::days(28 * k))
                .take_while(|day| *day <= last)
                .collect();
            assert_eq!(issued, expected, "{}: {}", patient.nhs_number, course.code.display);
            repeats += 1;
        }
    }
    assert!(repeats > 20, "{repeats} repeat courses");
}
