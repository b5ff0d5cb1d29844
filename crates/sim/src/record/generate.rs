//! The seeded generator: options in, a complete [`Record`] out, byte for byte the same for the same options.
//!
//! Order of work: practices and staff (fixed), patients (each from its own random stream), then the
//! appointment book and per-practice activity (requests, messages), then linkage credentials.

use super::dates::{uk_local, PartialDate, Precision};
use super::ids::{Nid, Supplier};
use super::model::*;
use super::random::{self, Draw};
use super::schedule;
use super::tables::{self, *};
use super::vocab::{Concept, Vocabulary};
use super::{credentials, document, CHILD_NHS_NUMBER, PATIENT_NHS_NUMBER, TYPE1_OPT_OUT_CODE};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use time::macros::{date, time};
use time::{Date, Duration, Month, OffsetDateTime, Time, UtcOffset};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateOptions {
    pub seed: u64,
    /// Number of patients (at least 2 are always made: the patient 9000000009 and the proxy's child).
    pub patients: usize,
    /// The anchor date: history lies before it, the appointment book around it.
    pub today: Date,
}

/// The three demo practices: ODS code, supplier, name, address (house, street, postcode), phone.
const PRACTICES: [(&str, Supplier, &str, &str, &str, &str, &str); 3] = [
    (
        "Y90001",
        Supplier::Emis,
        "Sim Surgery One",
        "1",
        "Health Street",
        "LS1 2AB",
        "0113 496 0000",
    ),
    (
        "Y90002",
        Supplier::SystmOne,
        "Sim Surgery Two",
        "2",
        "Clinic Road",
        "LS2 2BB",
        "0113 496 0001",
    ),
    (
        "Y90003",
        Supplier::Medicus,
        "Sim Surgery Three",
        "3",
        "Practice Way",
        "LS3 3CC",
        "0113 496 0002",
    ),
];

/// The staff: title, given, family, gender, role. The same people work at every demo practice.
const STAFF: [(&str, &str, &str, Gender, StaffRole); 6] = [
    ("Dr", "Sam", "Carter", Gender::Male, StaffRole::GeneralPractitioner),
    ("Dr", "Priya", "Shah", Gender::Female, StaffRole::GeneralPractitioner),
    ("Dr", "Tom", "Okoye", Gender::Male, StaffRole::GeneralPractitioner),
    ("Mrs", "Helen", "Price", Gender::Female, StaffRole::PracticeNurse),
    ("Mr", "Daniel", "Reid", Gender::Male, StaffRole::Pharmacist),
    ("Ms", "Jo", "Baker", Gender::Female, StaffRole::HealthcareAssistant),
];

/// Generate the record.
pub fn generate(opts: &GenerateOptions) -> Record {
    let count = opts.patients.max(2);
    let practices = practices();
    let practitioners = practitioners(&practices);
    let staff = Staff::from(&practitioners);
    let nhs_numbers = nhs_numbers(opts.seed, count);
    let patients: Vec<Patient> = (0..count)
        .map(|i| {
            PatientGen::new(
                opts,
                i,
                nhs_numbers.get(i).cloned().unwrap_or_default(),
                &staff,
                &practices,
            )
            .build()
        })
        .collect();
    let proxy_links = vec![ProxyLink {
        actor: patient_id(0),
        patient: patient_id(1),
        relationship: Relationship::Mother,
    }];
    let book = schedule::build(opts, &practices, &practitioners, &patients);
    let credentials = credentials::for_patients(opts.seed, &practices, &patients);
    Record {
        seed: opts.seed,
        today: opts.today,
        practices,
        practitioners,
        patients,
        sessions: book.sessions,
        slots: book.slots,
        appointments: book.appointments,
        prescription_requests: book.prescription_requests,
        messages: book.messages,
        proxy_links,
        credentials,
    }
}

/// The neutral id of patient `i`.
pub fn patient_id(i: usize) -> Nid {
    Nid(format!("P{i:04}"))
}

fn practices() -> Vec<Practice> {
    PRACTICES
        .iter()
        .map(|&(ods, supplier, name, house, street, postcode, phone)| Practice {
            id: Nid(format!("ORG-{ods}")),
            ods: ods.to_string(),
            supplier,
            name: name.to_string(),
            address: Address {
                house: house.to_string(),
                street: street.to_string(),
                locality: None,
                town: "Leeds".to_string(),
                county: Some("West Yorkshire".to_string()),
                postcode: postcode.to_string(),
            },
            phone: phone.to_string(),
            services: ServiceSwitches::ALL_ON,
        })
        .collect()
}

fn practitioners(practices: &[Practice]) -> Vec<Practitioner> {
    STAFF
        .iter()
        .enumerate()
        .map(|(i, &(title, given, family, gender, role))| {
            let id = Nid(format!("STAFF-{:02}", i + 1));
            Practitioner {
                roles: practices
                    .iter()
                    .map(|p| PractitionerRole {
                        id: Nid(format!("{id}-{}", p.ods)),
                        practice: p.ods.clone(),
                        role,
                    })
                    .collect(),
                id,
                name: PersonName {
                    title: Some(title.to_string()),
                    given: vec![given.to_string()],
                    family: family.to_string(),
                },
                gender,
                registration_number: format!("SIM{:05}", i + 1),
            }
        })
        .collect()
}

/// Staff ids by role, for picking authors.
pub(super) struct Staff {
    pub gps: Vec<Nid>,
    pub nurses: Vec<Nid>,
    pub all: Vec<(Nid, String)>,
}

impl From<&Vec<Practitioner>> for Staff {
    fn from(list: &Vec<Practitioner>) -> Staff {
        let with_role = |role: StaffRole| -> Vec<Nid> {
            list.iter()
                .filter(|p| p.roles.iter().any(|r| r.role == role))
                .map(|p| p.id.clone())
                .collect()
        };
        Staff {
            gps: with_role(StaffRole::GeneralPractitioner),
            nurses: with_role(StaffRole::PracticeNurse)
                .into_iter()
                .chain(with_role(StaffRole::HealthcareAssistant))
                .collect(),
            all: list.iter().map(|p| (p.id.clone(), p.name.display())).collect(),
        }
    }
}

impl Staff {
    pub fn name_of(&self, id: &Nid) -> String {
        self.all
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_default()
    }
}

/// NHS numbers: 9000000009 and 9000000017 first, then distinct valid numbers from the 900 test range.
fn nhs_numbers(seed: u64, count: usize) -> Vec<String> {
    let mut rng = random::stream(seed, random::NHS_NUMBERS, 0);
    let mut seen: BTreeSet<String> = [PATIENT_NHS_NUMBER.to_string(), CHILD_NHS_NUMBER.to_string()]
        .into_iter()
        .collect();
    let mut out = vec![PATIENT_NHS_NUMBER.to_string(), CHILD_NHS_NUMBER.to_string()];
    while out.len() < count {
        let base: u32 = rng.random_range(900_000_002..901_000_000);
        if let Some(n) = super::nhs::from_base(base) {
            if seen.insert(n.clone()) {
                out.push(n);
            }
        }
    }
    out
}

fn concept(code: &str) -> Option<Concept> {
    Vocabulary::get().concept(code)
}

fn utc(date: Date, t: Time) -> OffsetDateTime {
    uk_local(date, t).to_offset(UtcOffset::UTC)
}

fn years_between(from: Date, to: Date) -> i32 {
    let mut years = to.year() - from.year();
    if (to.month() as u8, to.day()) < (from.month() as u8, from.day()) {
        years -= 1;
    }
    years
}

fn years_before(date: Date, years: i32) -> Date {
    let y = date.year() - years;
    Date::from_calendar_date(y, date.month(), date.day().min(28)).unwrap_or(date)
}

/// Builds one patient from its own random stream.
struct PatientGen<'a> {
    rng: ChaCha8Rng,
    index: usize,
    pid: Nid,
    nhs_number: String,
    today: Date,
    /// Last day anything can be recorded: yesterday, or the day of death for deceased patients.
    until: Date,
    birth: Date,
    staff: &'a Staff,
    practices: &'a [Practice],
    counters: Vec<(&'static str, u32)>,
    record: ClinicalRecord,
    usual_gp: Nid,
    penicillin_allergic: bool,
}

impl<'a> PatientGen<'a> {
    fn new(
        opts: &GenerateOptions,
        index: usize,
        nhs_number: String,
        staff: &'a Staff,
        practices: &'a [Practice],
    ) -> Self {
        let mut rng = random::stream(opts.seed, random::PATIENT, index as u64);
        let usual_gp = rng.pick(&staff.gps).cloned().unwrap_or_else(|| Nid("STAFF-01".into()));
        PatientGen {
            rng,
            index,
            pid: patient_id(index),
            nhs_number,
            today: opts.today,
            // Yesterday: an item recorded at a time later today could still be to come when it is read.
            until: opts.today - Duration::days(1),
            birth: opts.today,
            staff,
            practices,
            counters: Vec::new(),
            record: ClinicalRecord::default(),
            usual_gp,
            penicillin_allergic: false,
        }
    }

    fn next_id(&mut self, kind: &'static str) -> Nid {
        let n = match self.counters.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.counters.push((kind, 1));
                1
            }
        };
        Nid(format!("{}-{kind}-{n:02}", self.pid))
    }

    fn age_at(&self, date: Date) -> i32 {
        years_between(self.birth, date)
    }

    fn age(&self) -> i32 {
        self.age_at(self.until)
    }

    fn gp(&mut self) -> Nid {
        if self.rng.chance(0.6) {
            self.usual_gp.clone()
        } else {
            self.rng
                .pick(&self.staff.gps)
                .cloned()
                .unwrap_or_else(|| self.usual_gp.clone())
        }
    }

    fn nurse(&mut self) -> Nid {
        self.rng
            .pick(&self.staff.nurses)
            .cloned()
            .unwrap_or_else(|| self.usual_gp.clone())
    }

    fn meta(&mut self, kind: &'static str, at: OffsetDateTime, by: Nid, consultation: Option<Nid>) -> ItemMeta {
        ItemMeta {
            id: self.next_id(kind),
            recorded_at: at,
            recorded_by: by,
            confidential: false,
            consultation,
        }
    }

    /// A working-hours instant on a date.
    fn daytime(&mut self, date: Date) -> OffsetDateTime {
        let minutes = self.rng.random_range(0..(9 * 60 / 5)) * 5;
        let t = Time::from_hms(8, 30, 0).unwrap_or(Time::MIDNIGHT) + Duration::minutes(minutes);
        utc(date, t)
    }

    /// A date in the patient's adult or whole life, between `from` and `until`.
    fn date_in(&mut self, from: Date, to: Date) -> Date {
        let from = from.max(self.birth);
        let to = to.min(self.until);
        self.rng.date_between(from, to)
    }

    /// Precision for a historic date: old dates are often only known to the year or month.
    fn precision_for(&mut self, date: Date) -> Precision {
        let years_ago = years_between(date, self.today);
        if years_ago >= 10 {
            *self
                .rng
                .pick(&[Precision::Year, Precision::YearMonth, Precision::Day])
                .unwrap_or(&Precision::Year)
        } else if years_ago >= 3 && self.rng.chance(0.3) {
            Precision::YearMonth
        } else {
            Precision::Day
        }
    }

    fn build(mut self) -> Patient {
        let demographics = self.demographics();
        self.allergies();
        let chronic = self.problems();
        self.acute_episodes();
        self.routine_check();
        self.monitoring(&chronic);
        self.other_results();
        self.immunisations();
        self.documents(&demographics.name);
        self.flags();
        self.finish(demographics)
    }

    fn finish(mut self, d: Demographics) -> Patient {
        let registered_on = if self.index == 1 {
            self.birth + Duration::days(14)
        } else {
            let from = self.birth.max(years_before(self.today, 25));
            self.rng.date_between(from, self.today - Duration::days(60))
        };
        let mut services = ServiceSwitches::ALL_ON;
        // Fixed cases so every category exists in the default 50: appointments off for patient 4,
        // prescriptions off for patient 6.
        if self.index == 4 {
            services.appointments = false;
        }
        if self.index == 6 {
            services.prescriptions = false;
        }
        let registrations = self
            .practices
            .iter()
            .map(|p| Registration {
                practice: p.ods.clone(),
                registered_on,
                usual_gp: self.usual_gp.clone(),
                services,
            })
            .collect();
        // Consultations and documents read best newest first; other lists keep generation order.
        self.record
            .consultations
            .sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.meta.id.cmp(&b.meta.id)));
        Patient {
            id: self.pid,
            nhs_number: self.nhs_number,
            name: d.name,
            previous_names: d.previous_names,
            gender: d.gender,
            birth_date: self.birth,
            deceased_at: d.deceased_at,
            address: d.address,
            telecom: d.telecom,
            ethnicity: d.ethnicity,
            registrations,
            clinical: self.record,
        }
    }
}

struct Demographics {
    name: PersonName,
    previous_names: Vec<PreviousName>,
    gender: Gender,
    deceased_at: Option<OffsetDateTime>,
    address: Address,
    telecom: Vec<Telecom>,
    ethnicity: Option<EthnicCategory>,
}

// ---------------------------------------------------------------------------------------------------------------
// Demographics

impl PatientGen<'_> {
    fn demographics(&mut self) -> Demographics {
        match self.index {
            0 => self.alex_tester(),
            1 => self.child_of_alex(),
            _ => self.random_person(),
        }
    }

    /// Patient 0, as in the fact-sheet examples.
    fn alex_tester(&mut self) -> Demographics {
        self.birth = date!(1985 - 04 - 12);
        Demographics {
            name: PersonName {
                title: Some("Ms".into()),
                given: vec!["Alex".into()],
                family: "Tester".into(),
            },
            previous_names: vec![PreviousName {
                name: PersonName {
                    title: Some("Miss".into()),
                    given: vec!["Alex".into()],
                    family: "Sample".into(),
                },
                until: date!(2012 - 08 - 17),
            }],
            gender: Gender::Female,
            deceased_at: None,
            address: Address {
                house: "1".into(),
                street: "Test Lane".into(),
                locality: None,
                town: "Leeds".into(),
                county: Some("West Yorkshire".into()),
                postcode: "LS1 1AA".into(),
            },
            telecom: vec![
                Telecom::Phone {
                    value: "01632 960001".into(),
                    use_: ContactUse::Home,
                },
                Telecom::Phone {
                    value: "07700 900001".into(),
                    use_: ContactUse::Mobile,
                },
                Telecom::Email {
                    value: "alex@example.org".into(),
                },
            ],
            ethnicity: tables::ETHNICITIES.first().map(|(_, e)| e.clone()),
        }
    }

    /// Patient 1: the child patient 0 has proxy access to (nine years old on the anchor date).
    fn child_of_alex(&mut self) -> Demographics {
        self.birth = Date::from_calendar_date(self.today.year() - 9, Month::September, 3).unwrap_or(self.today);
        Demographics {
            name: PersonName {
                title: None,
                given: vec!["Jamie".into(), "Lee".into()],
                family: "Tester".into(),
            },
            previous_names: Vec::new(),
            gender: Gender::Male,
            deceased_at: None,
            address: Address {
                house: "1".into(),
                street: "Test Lane".into(),
                locality: None,
                town: "Leeds".into(),
                county: Some("West Yorkshire".into()),
                postcode: "LS1 1AA".into(),
            },
            telecom: vec![Telecom::Phone {
                value: "01632 960001".into(),
                use_: ContactUse::Home,
            }],
            ethnicity: tables::ETHNICITIES.first().map(|(_, e)| e.clone()),
        }
    }

    fn random_person(&mut self) -> Demographics {
        let r = &mut self.rng;
        let gender = match r.random_range(0..100) {
            0..=48 => Gender::Female,
            49..=96 => Gender::Male,
            97..=98 => Gender::Other,
            _ => Gender::Unknown,
        };
        // Ages 1 to 94, weighted towards adults.
        let age = if r.chance(0.12) {
            r.random_range(1..16)
        } else {
            r.random_range(18..95)
        };
        let born_from = years_before(self.today, age + 1) + Duration::days(1);
        let birth = r.date_between(born_from, years_before(self.today, age));
        let given_pool = match gender {
            Gender::Female => FEMALE_GIVEN,
            Gender::Male => MALE_GIVEN,
            _ => NEUTRAL_GIVEN,
        };
        let mut given = vec![r.pick(given_pool).copied().unwrap_or("Sam").to_string()];
        if r.chance(0.4) {
            given.push(r.pick(MIDDLE_NAMES).copied().unwrap_or("Lee").to_string());
        }
        let family = r.pick(SURNAMES).copied().unwrap_or("Smith").to_string();
        let adult = age >= 18;
        let married = adult && gender == Gender::Female && r.chance(0.35);
        let title = match (adult, gender) {
            (false, _) => None,
            (true, _) if r.chance(0.05) => Some("Dr"),
            (true, Gender::Female) if married => Some("Mrs"),
            (true, Gender::Female) => Some(if r.chance(0.5) { "Ms" } else { "Miss" }),
            (true, Gender::Male) => Some("Mr"),
            (true, _) => Some("Mx"),
        };
        let name = PersonName {
            title: title.map(str::to_string),
            given: given.clone(),
            family: family.clone(),
        };
        let mut previous_names = Vec::new();
        if married {
            let maiden = r.pick(SURNAMES).copied().unwrap_or("Jones").to_string();
            if maiden != family {
                let from = years_before(self.today, (age - 18).max(1)).max(birth + Duration::days(18 * 366));
                let until = r.date_between(from, self.today - Duration::days(30));
                previous_names.push(PreviousName {
                    name: PersonName {
                        title: Some("Miss".into()),
                        given,
                        family: maiden,
                    },
                    until,
                });
            }
        }
        let (town, county, outwards) = *r.pick(TOWNS).unwrap_or(&TOWNS[0]);
        let outward = r.pick(outwards).copied().unwrap_or("LS1");
        let letter = |r: &mut ChaCha8Rng| char::from(*r.pick(POSTCODE_LETTERS).unwrap_or(&b'A'));
        let postcode = format!("{outward} {}{}{}", r.random_range(1..10), letter(r), letter(r));
        let house = if r.chance(0.15) {
            r.pick(HOUSE_NAMES).copied().unwrap_or("Rose Cottage").to_string()
        } else {
            r.random_range(1..180).to_string()
        };
        let address = Address {
            house,
            street: r.pick(STREETS).copied().unwrap_or("Mill Street").to_string(),
            locality: if r.chance(0.2) {
                r.pick(LOCALITIES).map(|s| s.to_string())
            } else {
                None
            },
            town: town.to_string(),
            county: county.map(str::to_string),
            postcode,
        };
        // Ofcom drama ranges: 01632 960xxx (landline) and 07700 900xxx (mobile).
        let mut telecom = Vec::new();
        if r.chance(0.6) {
            telecom.push(Telecom::Phone {
                value: format!("01632 960{:03}", r.random_range(2..1000)),
                use_: ContactUse::Home,
            });
        }
        if adult || r.chance(0.3) {
            telecom.push(Telecom::Phone {
                value: format!("07700 900{:03}", r.random_range(2..1000)),
                use_: ContactUse::Mobile,
            });
        }
        if adult && r.chance(0.1) {
            telecom.push(Telecom::Phone {
                value: format!("01632 960{:03}", r.random_range(2..1000)),
                use_: ContactUse::Work,
            });
        }
        if adult && r.chance(0.6) {
            let first = name.given.first().cloned().unwrap_or_default().to_lowercase();
            telecom.push(Telecom::Email {
                value: format!("{first}.{}{}@example.org", family.to_lowercase(), self.index),
            });
        }
        let ethnicity = if r.chance(0.9) {
            r.pick_weighted(ETHNICITIES).cloned()
        } else {
            None
        };
        self.birth = birth;
        // Patient 5 is always deceased; others (older ones) sometimes.
        let deceased = self.index == 5 || (self.index > 9 && age > 60 && self.rng.chance(0.06));
        let deceased_at = if deceased {
            let day = self
                .rng
                .date_between(self.today - Duration::days(700), self.today - Duration::days(20));
            self.until = day;
            let at = self.daytime(day);
            Some(at)
        } else {
            None
        };
        Demographics {
            name,
            previous_names,
            gender,
            deceased_at,
            address,
            telecom,
            ethnicity,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Clinical content

impl PatientGen<'_> {
    fn allergies(&mut self) {
        let mut chosen: Vec<(&'static str, Option<&'static str>)> = Vec::new();
        if self.index == 0 {
            chosen.push((PENICILLIN_ALLERGY, None));
        } else if self.rng.chance(0.35) {
            let n = if self.rng.chance(0.25) { 2 } else { 1 };
            for _ in 0..n {
                if let Some(&a) = self.rng.pick(ALLERGIES) {
                    if !chosen.iter().any(|c| c.0 == a.0) {
                        chosen.push(a);
                    }
                }
            }
        } else if self.rng.chance(0.5) {
            let code = if self.rng.chance(0.7) {
                NO_KNOWN_DRUG_ALLERGY
            } else {
                NO_KNOWN_ALLERGY
            };
            if let Some(c) = concept(code) {
                let day = self.date_in(self.until - Duration::days(3 * 365), self.until);
                let at = self.daytime(day);
                let by = self.gp();
                let meta = self.meta("ALG", at, by, None);
                self.record.allergies.push(Allergy {
                    meta,
                    code: c,
                    substance: None,
                    onset: Some(PartialDate::Day(day)),
                    status: AllergyStatus::Active,
                    resolved_on: None,
                    reactions: Vec::new(),
                    note: None,
                });
            }
            return;
        }
        for (code, substance) in chosen {
            let Some(c) = concept(code) else { continue };
            if code == PENICILLIN_ALLERGY || code == "294505008" {
                self.penicillin_allergic = true;
            }
            let (onset, recorded) = if self.index == 0 {
                (PartialDate::YearMonth(2009, Month::June), date!(2009 - 06 - 14))
            } else {
                let day = self.date_in(self.birth + Duration::days(365), self.until);
                let p = self.precision_for(day);
                (PartialDate::with_precision(day, p), day)
            };
            let mut reactions = Vec::new();
            let n = if self.index == 0 {
                1
            } else {
                self.rng.random_range(1..=2)
            };
            for k in 0..n {
                let code = if self.index == 0 {
                    "247472004"
                } else {
                    self.rng.pick(MANIFESTATIONS).copied().unwrap_or("64305001")
                };
                if let Some(m) = concept(code) {
                    if reactions.iter().any(|r: &Reaction| r.manifestation == m) {
                        continue;
                    }
                    let severity = match (self.index, k, self.rng.random_range(0..10)) {
                        (0, ..) => Severity::Moderate,
                        (_, _, 0..=4) => Severity::Mild,
                        (_, _, 5..=8) => Severity::Moderate,
                        _ => Severity::Severe,
                    };
                    reactions.push(Reaction {
                        manifestation: m,
                        severity,
                    });
                }
            }
            let resolved = self.index != 0 && self.rng.chance(0.2);
            let resolved_on = if resolved {
                let from = recorded.max(self.until - Duration::days(5 * 365));
                Some(PartialDate::Day(self.rng.date_between(from, self.until)))
            } else {
                None
            };
            let at = self.daytime(recorded);
            let by = self.gp();
            let meta = self.meta("ALG", at, by, None);
            let note = if self.index == 0 {
                Some("Rash".to_string())
            } else if self.rng.chance(0.3) {
                Some("Reported by patient".to_string())
            } else {
                None
            };
            self.record.allergies.push(Allergy {
                meta,
                code: c,
                substance: substance.and_then(concept),
                onset: Some(onset),
                status: if resolved {
                    AllergyStatus::Resolved
                } else {
                    AllergyStatus::Active
                },
                resolved_on,
                reactions,
                note,
            });
        }
    }

    /// Long-term problems, each with a repeat medication where one fits. Returns (problem id, table row).
    fn problems(&mut self) -> Vec<(Nid, &'static ChronicProblem)> {
        let age = self.age();
        let mut picked: Vec<&'static ChronicProblem> = Vec::new();
        if self.index == 0 {
            picked.extend(
                CHRONIC_PROBLEMS
                    .iter()
                    .filter(|p| p.code == "195967001" || p.code == "59621000"),
            );
        } else if self.index == 8 {
            picked.extend(CHRONIC_PROBLEMS.iter().filter(|p| p.code == "35489007"));
        } else if age >= 16 {
            let n = match age {
                16..=39 => self.rng.random_range(0..=2),
                40..=64 => self.rng.random_range(1..=3),
                _ => self.rng.random_range(1..=4),
            };
            for _ in 0..n {
                let eligible: Vec<&'static ChronicProblem> = CHRONIC_PROBLEMS
                    .iter()
                    .filter(|p| p.min_age <= age && !picked.iter().any(|q| q.code == p.code))
                    .collect();
                if let Some(&p) = self.rng.pick(&eligible) {
                    picked.push(p);
                }
            }
        } else if self.rng.chance(0.2) {
            picked.extend(CHRONIC_PROBLEMS.iter().find(|p| p.code == "195967001"));
        }
        let mut out = Vec::new();
        for p in picked {
            let Some(code) = concept(p.code) else {
                continue;
            };
            let onset_day = if self.index == 0 && p.code == "195967001" {
                date!(1998 - 01 - 01)
            } else {
                let earliest = years_before(self.until, self.age() - p.min_age.min(self.age()));
                self.date_in(
                    earliest.max(years_before(self.until, 30)),
                    self.until - Duration::days(90),
                )
            };
            let onset = if self.index == 0 && p.code == "195967001" {
                PartialDate::Year(1998)
            } else {
                let prec = self.precision_for(onset_day);
                PartialDate::with_precision(onset_day, prec)
            };
            let at = self.daytime(onset_day);
            let by = self.gp();
            let mut meta = self.meta("PRB", at, by, None);
            meta.confidential = p.sensitive && (self.index == 8 || self.rng.chance(0.5));
            let problem_id = meta.id.clone();
            let confidential = meta.confidential;
            let mut linked = Vec::new();
            if !p.medications.is_empty() {
                let med = if self.index == 0 {
                    p.medications[0]
                } else {
                    self.rng.pick(p.medications).copied().unwrap_or(p.medications[0])
                };
                let start = onset_day.max(self.until - Duration::days(3 * 365));
                if let Some(course) = self.repeat_course(med, start, Some(problem_id.clone()), confidential) {
                    linked.push(course);
                }
            }
            self.record.problems.push(Problem {
                meta,
                code,
                status: ProblemStatus::Active,
                significance: Significance::Major,
                onset,
                ended: None,
                linked,
                note: None,
            });
            out.push((problem_id, p));
        }
        out
    }

    fn dosage_and_quantity(display: &str, code: &str, acute: bool) -> (String, u32, String) {
        let unit = if display.contains("inhaler") {
            "inhaler"
        } else if display.contains("capsule") {
            "capsule"
        } else {
            "tablet"
        };
        let dosage = match code {
            "39113611000001102" => "Two puffs when required",
            "35908111000001105" => "Two puffs twice a day",
            "325278007" | "386047000" => "One tablet twice a day with meals",
            "39698611000001106" | "39697911000001101" => "One tablet each morning",
            "319283006" => "One daily",
            "322236009" | "322341003" => "Two tablets up to four times a day when required",
            "319733000" => "As directed by the anticoagulation clinic",
            _ if acute && unit == "capsule" => "One capsule three times a day for 7 days",
            _ if acute => "One tablet three times a day",
            _ if unit == "capsule" => "One capsule once a day",
            _ => "One tablet once a day",
        };
        let quantity = match (unit, acute) {
            ("inhaler", _) => 1,
            (_, true) => 21,
            _ if dosage.contains("twice") => 56,
            _ => 28,
        };
        (dosage.to_string(), quantity, unit.to_string())
    }

    fn repeat_course(&mut self, code: &str, start: Date, problem: Option<Nid>, confidential: bool) -> Option<Nid> {
        let c = concept(code)?;
        let (dosage, quantity, unit) = Self::dosage_and_quantity(&c.display, code, false);
        let at = self.daytime(start);
        let by = self.gp();
        let mut meta = self.meta("MED", at, by, None);
        meta.confidential = confidential;
        let id = meta.id.clone();
        let discontinued = self.index > 1 && self.rng.chance(0.12);
        let last_possible = if discontinued {
            self.rng.date_between(start, self.until)
        } else {
            self.until
        };
        // Issues every 28 days from the start, so a course's count of issues is what its years give.
        let mut issues = Vec::new();
        let mut day = start;
        let mut n = 0;
        while day <= last_possible {
            n += 1;
            let issued_at = utc(day, time!(09:00));
            issues.push(Issue {
                id: Nid(format!("{id}-I{n}")),
                issued_at,
                quantity,
            });
            day += Duration::days(28);
        }
        let ended_at = if discontinued {
            Some(utc(last_possible, time!(12:00)))
        } else {
            None
        };
        let review = if discontinued {
            None
        } else {
            Some(self.today + Duration::days(self.rng.random_range(30..270)))
        };
        self.record.medications.push(MedicationCourse {
            meta,
            code: c,
            kind: CourseKind::Repeat,
            status: if discontinued {
                CourseStatus::Discontinued
            } else {
                CourseStatus::Active
            },
            dosage,
            quantity,
            quantity_unit: unit,
            started_on: start,
            ended_at,
            review_on: review,
            requestable: !discontinued && (self.index == 0 || self.rng.chance(0.85)),
            issues,
            problem,
        });
        Some(id)
    }

    fn acute_course(
        &mut self,
        code: &str,
        day: Date,
        at: OffsetDateTime,
        by: Nid,
        consultation: Option<Nid>,
        problem: Option<Nid>,
    ) -> Option<Nid> {
        let c = concept(code)?;
        let (dosage, quantity, unit) = Self::dosage_and_quantity(&c.display, code, true);
        let meta = self.meta("MED", at, by, consultation);
        let id = meta.id.clone();
        let ended = day + Duration::days(7);
        self.record.medications.push(MedicationCourse {
            meta,
            code: c,
            kind: CourseKind::Acute,
            status: if ended < self.until {
                CourseStatus::Completed
            } else {
                CourseStatus::Active
            },
            dosage,
            quantity,
            quantity_unit: unit,
            started_on: day,
            ended_at: Some(utc(ended, time!(12:00))),
            review_on: None,
            requestable: false,
            issues: vec![Issue {
                id: Nid(format!("{id}-I1")),
                issued_at: at,
                quantity,
            }],
            problem,
        });
        Some(id)
    }

    fn consultation(&mut self, at: OffsetDateTime, kind: &str, by: Nid) -> Option<Nid> {
        let c = concept(kind)?;
        let location = ENCOUNTERS
            .iter()
            .find(|e| e.0 == kind)
            .map(|e| e.2)
            .unwrap_or("Main surgery");
        let meta = self.meta("CON", at, by.clone(), None);
        let id = meta.id.clone();
        self.record.consultations.push(Consultation {
            meta,
            kind: c,
            started_at: at,
            duration_minutes: *self.rng.pick(&[10u32, 10, 15, 20]).unwrap_or(&10),
            practitioner: by,
            location: location.to_string(),
            sections: Vec::new(),
        });
        Some(id)
    }

    fn file_in(&mut self, consultation: &Option<Nid>, heading: &str, item: Nid) {
        let Some(cid) = consultation else { return };
        if let Some(c) = self.record.consultations.iter_mut().find(|c| &c.meta.id == cid) {
            match c.sections.iter_mut().find(|s| s.heading == heading) {
                Some(s) => s.items.push(item),
                None => c.sections.push(Section {
                    heading: heading.to_string(),
                    items: vec![item],
                }),
            }
        }
    }

    fn random_encounter(&mut self) -> &'static str {
        let weighted: Vec<(u32, &'static str)> = ENCOUNTERS.iter().map(|e| (e.1, e.0)).collect();
        self.rng.pick_weighted(&weighted).copied().unwrap_or(SEEN_IN_SURGERY)
    }

    /// Short illnesses: a consultation with a (past, minor) problem, vital signs and an acute prescription.
    fn acute_episodes(&mut self) {
        let child = self.age() < 16;
        let n = if self.index == 1 {
            1
        } else if child {
            self.rng.random_range(0..=1)
        } else {
            self.rng.random_range(0..=2)
        };
        for _ in 0..n {
            let options: Vec<&'static AcuteProblem> = ACUTE_PROBLEMS.iter().filter(|p| !child || p.child).collect();
            let p = if self.index == 1 {
                ACUTE_PROBLEMS.iter().find(|p| p.code == "3110003")
            } else {
                self.rng.pick(&options).copied()
            };
            let Some(p) = p else { continue };
            let Some(code) = concept(p.code) else {
                continue;
            };
            let day = self.date_in(self.until - Duration::days(4 * 365), self.until - Duration::days(10));
            let at = self.daytime(day);
            let by = self.gp();
            let kind = self.random_encounter();
            let con = self.consultation(at, kind, by.clone());
            let meta = self.meta("PRB", at, by.clone(), con.clone());
            let problem_id = meta.id.clone();
            self.file_in(&con, "Problem", problem_id.clone());
            let mut linked = Vec::new();
            if kind == SEEN_IN_SURGERY || kind == "270420001" {
                let temp = self.rng.value(36.4, 38.6, 1);
                if let Some(o) = self.vital(
                    TEMPERATURE,
                    temp,
                    day,
                    at,
                    by.clone(),
                    con.clone(),
                    Some(problem_id.clone()),
                ) {
                    self.file_in(&con, "Examination", o.clone());
                    linked.push(o);
                }
                let rr = self.rng.value(12.0, 24.0, 0);
                if let Some(o) = self.vital(RESPIRATORY_RATE, rr, day, at, by.clone(), con.clone(), None) {
                    self.file_in(&con, "Examination", o);
                }
                let hr = self.rng.value(62.0, 112.0, 0);
                if let Some(o) = self.vital(HEART_RATE, hr, day, at, by.clone(), con.clone(), None) {
                    self.file_in(&con, "Examination", o);
                }
            }
            let med = if self.penicillin_allergic {
                p.penicillin_free_alternative.or(p.medication)
            } else {
                p.medication
            };
            if let Some(m) = med {
                if let Some(course) = self.acute_course(m, day, at, by.clone(), con.clone(), Some(problem_id.clone())) {
                    self.file_in(&con, "Medication", course.clone());
                    linked.push(course);
                }
            }
            let ended = day + Duration::days(self.rng.random_range(7..30));
            self.record.problems.push(Problem {
                meta,
                code,
                status: ProblemStatus::Past,
                significance: Significance::Minor,
                onset: PartialDate::Day(day),
                ended: Some(PartialDate::Day(ended.min(self.until))),
                linked,
                note: None,
            });
        }
    }

    fn range_of(code: &str) -> Option<(Option<f64>, Option<f64>)> {
        Vocabulary::get()
            .entry(code)
            .and_then(|e| e.reference_range)
            .map(|r| (r.low, r.high))
    }

    fn interpret(value: f64, range: Option<(Option<f64>, Option<f64>)>) -> Option<Interpretation> {
        let (low, high) = range?;
        Some(match (low, high) {
            (Some(l), _) if value < l => Interpretation::Low,
            (_, Some(h)) if value > h => Interpretation::High,
            _ => Interpretation::Normal,
        })
    }

    fn quantity(code: &str, value: f64, decimals: u8) -> Option<Quantity> {
        let unit = Vocabulary::get().entry(code)?.ucum.clone()?;
        Some(Quantity { value, decimals, unit })
    }

    #[allow(clippy::too_many_arguments)]
    fn observation(
        &mut self,
        code: &str,
        kind: ObservationKind,
        value: ObservationValue,
        day: Date,
        at: OffsetDateTime,
        by: Nid,
        consultation: Option<Nid>,
        problem: Option<Nid>,
    ) -> Option<Nid> {
        let c = concept(code)?;
        let (range, interpretation) = match &value {
            ObservationValue::Quantity(q) => {
                let range = Self::range_of(code);
                (range, Self::interpret(q.value, range))
            }
            _ => (None, None),
        };
        let meta = self.meta("OBS", at, by, consultation);
        let id = meta.id.clone();
        self.record.observations.push(Observation {
            meta,
            code: c,
            kind,
            effective: PartialDate::Day(day),
            value,
            range,
            interpretation,
            problem: problem.clone(),
            note: None,
        });
        if let Some(pid) = problem {
            if let Some(p) = self.record.problems.iter_mut().find(|p| p.meta.id == pid) {
                p.linked.push(id.clone());
            }
        }
        Some(id)
    }

    #[allow(clippy::too_many_arguments)]
    fn vital(
        &mut self,
        code: &str,
        value: f64,
        day: Date,
        at: OffsetDateTime,
        by: Nid,
        con: Option<Nid>,
        problem: Option<Nid>,
    ) -> Option<Nid> {
        let decimals = if code == TEMPERATURE || code == BODY_WEIGHT || code == BMI {
            1
        } else {
            0
        };
        let q = Self::quantity(code, value, decimals)?;
        self.observation(
            code,
            ObservationKind::VitalSign,
            ObservationValue::Quantity(q),
            day,
            at,
            by,
            con,
            problem,
        )
    }

    fn blood_pressure(
        &mut self,
        day: Date,
        at: OffsetDateTime,
        by: Nid,
        con: Option<Nid>,
        problem: Option<Nid>,
    ) -> Option<Nid> {
        let systolic = self.rng.value(104.0, 168.0, 0);
        let diastolic = self.rng.value(62.0, (systolic - 30.0).min(102.0), 0);
        let mut components = Vec::new();
        for (code, v) in [(SYSTOLIC, systolic), (DIASTOLIC, diastolic)] {
            let c = concept(code)?;
            let range = Self::range_of(code);
            components.push(Component {
                code: c,
                value: Self::quantity(code, v, 0)?,
                range,
                interpretation: Self::interpret(v, range),
            });
        }
        self.observation(
            BLOOD_PRESSURE,
            ObservationKind::VitalSign,
            ObservationValue::Components(components),
            day,
            at,
            by,
            con,
            problem,
        )
    }

    /// A routine check in a consultation: weight, height, BMI, blood pressure, smoking and alcohol.
    fn routine_check(&mut self) {
        let day = self.date_in(self.until - Duration::days(400), self.until - Duration::days(3));
        let at = self.daytime(day);
        let by = if self.rng.chance(0.5) { self.nurse() } else { self.gp() };
        let kind = if self.index == 0 {
            TELEPHONE_CONSULTATION
        } else {
            SEEN_IN_SURGERY
        };
        let con = self.consultation(at, kind, by.clone());
        let age = self.age_at(day);
        let (weight, height) = if self.index == 0 {
            (72.4, 168.0)
        } else if age < 16 {
            let a = f64::from(age.max(1));
            (
                self.rng.value(2.5 * a + 6.0, 3.5 * a + 9.0, 1),
                self.rng.value(70.0 + 5.5 * a, 78.0 + 6.5 * a, 0),
            )
        } else {
            (self.rng.value(48.0, 112.0, 1), self.rng.value(150.0, 193.0, 0))
        };
        if let Some(o) = self.vital(BODY_WEIGHT, weight, day, at, by.clone(), con.clone(), None) {
            self.file_in(&con, "Examination", o);
        }
        if let Some(o) = self.vital(BODY_HEIGHT, height, day, at, by.clone(), con.clone(), None) {
            self.file_in(&con, "Examination", o);
        }
        let bmi = ((weight / (height / 100.0).powi(2)) * 10.0).round() / 10.0;
        if let Some(o) = self.vital(BMI, bmi, day, at, by.clone(), con.clone(), None) {
            self.file_in(&con, "Examination", o);
        }
        if age >= 16 {
            if let Some(o) = self.blood_pressure(day, at, by.clone(), con.clone(), None) {
                self.file_in(&con, "Examination", o);
            }
            let smoking = self.rng.pick(SMOKING).copied().unwrap_or("266919005");
            if let Some(o) = self.observation(
                smoking,
                ObservationKind::SocialHistory,
                ObservationValue::None,
                day,
                at,
                by.clone(),
                con.clone(),
                None,
            ) {
                self.file_in(&con, "Social", o);
            }
            if self.rng.chance(0.5) {
                let units = self.rng.random_range(0..30);
                let text = if units == 0 {
                    "Does not drink alcohol".to_string()
                } else {
                    format!("Drinks about {units} units a week")
                };
                if let Some(o) = self.observation(
                    ALCOHOL_INTAKE,
                    ObservationKind::SocialHistory,
                    ObservationValue::Text(text),
                    day,
                    at,
                    by.clone(),
                    con.clone(),
                    None,
                ) {
                    self.file_in(&con, "Social", o);
                }
            }
        }
    }

    /// Readings that monitor long-term problems, linked to them; blood tests as panels with ranges and flags.
    fn monitoring(&mut self, chronic: &[(Nid, &'static ChronicProblem)]) {
        for (pid, p) in chronic {
            for &code in p.monitoring {
                let readings = self.rng.random_range(1..=2);
                for _ in 0..readings {
                    let day = self.date_in(self.until - Duration::days(540), self.until - Duration::days(2));
                    let at = self.daytime(day);
                    if code == BLOOD_PRESSURE {
                        let by = self.nurse();
                        let con = if self.rng.chance(0.5) {
                            self.consultation(at, SEEN_IN_SURGERY, by.clone())
                        } else {
                            None
                        };
                        if let Some(o) = self.blood_pressure(day, at, by, con.clone(), Some(pid.clone())) {
                            self.file_in(&con, "Examination", o);
                        }
                    } else if code == OXYGEN_SATURATION || code == HEART_RATE {
                        let by = self.nurse();
                        let v = if code == HEART_RATE {
                            self.rng.value(52.0, 118.0, 0)
                        } else {
                            self.rng.value(92.0, 100.0, 0)
                        };
                        self.vital(code, v, day, at, by, None, Some(pid.clone()));
                    } else {
                        self.lab(code, day, Some(pid.clone()));
                    }
                }
            }
        }
        if self.age() >= 18 && (self.index == 0 || self.rng.chance(0.6)) {
            let day = self.date_in(self.until - Duration::days(700), self.until - Duration::days(5));
            for &code in LIPID_PANEL {
                self.lab(code, day, None);
            }
            if self.rng.chance(0.6) {
                let day = self.date_in(self.until - Duration::days(700), self.until - Duration::days(5));
                for &code in RENAL_PANEL {
                    self.lab(code, day, None);
                }
            }
        }
    }

    fn lab(&mut self, code: &str, day: Date, problem: Option<Nid>) -> Option<Nid> {
        let &(_, low, high, decimals) = LAB_TESTS.iter().find(|t| t.0 == code)?;
        let value = if self.index == 0 && code == LIPID_PANEL[0] {
            5.8
        } else {
            self.rng.value(low, high, decimals)
        };
        let q = Self::quantity(code, value, decimals)?;
        // Results arrive in the afternoon, filed by the usual GP.
        let at = utc(day, time!(16:00));
        let by = self.usual_gp.clone();
        self.observation(
            code,
            ObservationKind::Laboratory,
            ObservationValue::Quantity(q),
            day,
            at,
            by,
            None,
            problem,
        )
    }

    /// Occasional results that are text only.
    fn other_results(&mut self) {
        if self.age() >= 18 && (self.index == 2 || self.rng.chance(0.15)) {
            let day = self.date_in(self.until - Duration::days(300), self.until - Duration::days(2));
            let at = utc(day, time!(16:00));
            let by = self.usual_gp.clone();
            let text = "Sample haemolysed - please repeat".to_string();
            self.observation(
                HAEMOGLOBIN,
                ObservationKind::Laboratory,
                ObservationValue::Text(text),
                day,
                at,
                by,
                None,
                None,
            );
        }
    }

    fn batch(&mut self) -> String {
        let l = |r: &mut ChaCha8Rng| char::from(b'A' + r.random_range(0..26u8));
        format!(
            "{}{}{}",
            l(&mut self.rng),
            l(&mut self.rng),
            self.rng.random_range(100..10000)
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn immunisation(
        &mut self,
        procedure: &str,
        vaccine: Option<&str>,
        day: Date,
        given: bool,
        dose: Option<u32>,
        batch: Option<String>,
        in_consultation: bool,
    ) {
        if day > self.until || day < self.birth {
            return;
        }
        let Some(p) = concept(procedure) else { return };
        let at = self.daytime(day);
        let by = self.nurse();
        let con = if in_consultation {
            self.consultation(at, SEEN_IN_SURGERY, by.clone())
        } else {
            None
        };
        let meta = self.meta("IMM", at, by, con.clone());
        let id = meta.id.clone();
        let precision = if given { self.precision_for(day) } else { Precision::Day };
        let reason = if given {
            None
        } else {
            self.rng.pick(NOT_GIVEN_REASONS).map(|s| s.to_string())
        };
        let batch = if given {
            batch.or_else(|| Some(self.batch()))
        } else {
            None
        };
        self.record.immunisations.push(Immunisation {
            meta,
            procedure: p,
            vaccine: if given { vaccine.and_then(concept) } else { None },
            date: PartialDate::with_precision(day, precision),
            given,
            not_given_reason: reason,
            batch,
            dose_number: dose,
        });
        self.file_in(&con, "Immunisation", id);
    }

    fn immunisations(&mut self) {
        let age = self.age();
        if age < 16 {
            let b = self.birth;
            self.immunisation(INFANT_FIRST, None, b + Duration::days(56), true, Some(1), None, false);
            self.immunisation(MMR_FIRST, None, b + Duration::days(366), true, Some(1), None, false);
            self.immunisation(
                PRESCHOOL_BOOSTER,
                None,
                b + Duration::days(3 * 365 + 120),
                true,
                None,
                None,
                false,
            );
            return;
        }
        // Flu in each of the last three autumns.
        for k in 1..=3 {
            let year = self.today.year() - k;
            let day = Date::from_calendar_date(year, Month::October, 1).unwrap_or(self.today)
                + Duration::days(self.rng.random_range(0..40));
            if self.index == 0 && k == 1 {
                self.immunisation(
                    SEASONAL_FLU,
                    Some(FLU_VACCINE),
                    day,
                    true,
                    None,
                    Some("AB123".to_string()),
                    true,
                );
            } else if (age >= 65 || self.rng.chance(0.4)) && self.index != 0 {
                let given = !(self.index == 2 && k == 1) && self.rng.chance(0.88);
                self.immunisation(SEASONAL_FLU, Some(FLU_VACCINE), day, given, None, None, false);
            }
        }
        if age >= 65 {
            let day = years_before(self.until, age - 65).max(self.until - Duration::days(20 * 365));
            self.immunisation(PNEUMOCOCCAL, Some(PNEUMOCOCCAL_VACCINE), day, true, None, None, false);
        }
        if age >= 70 && self.rng.chance(0.6) {
            let day = self.date_in(self.until - Duration::days(5 * 365), self.until);
            self.immunisation(SHINGLES, None, day, true, Some(1), None, false);
        }
        if self.rng.chance(0.7) {
            let first = date!(2021 - 03 - 01) + Duration::days(self.rng.random_range(0..120));
            self.immunisation(COVID_FIRST, Some(COVID_VACCINE), first, true, Some(1), None, false);
            self.immunisation(
                COVID_SECOND,
                Some(COVID_VACCINE),
                first + Duration::days(77),
                true,
                Some(2),
                None,
                false,
            );
        }
    }

    fn documents(&mut self, name: &PersonName) {
        let n = if self.index == 0 {
            1
        } else {
            match self.rng.random_range(0..10) {
                0..=3 => 0,
                4..=8 => 1,
                _ => 2,
            }
        };
        for k in 0..n {
            let (code, title) = if self.index == 0 {
                DOCUMENTS[0]
            } else {
                *self.rng.pick(DOCUMENTS).unwrap_or(&DOCUMENTS[0])
            };
            let Some(kind) = concept(code) else { continue };
            let day = self.date_in(self.until - Duration::days(3 * 365), self.until - Duration::days(1));
            let at = self.daytime(day);
            let by = self.usual_gp.clone();
            let mut meta = self.meta("DOC", at, by.clone(), None);
            meta.confidential = self.index == 9 && k == 0;
            let pdf = self.index == 0 || self.rng.chance(0.7);
            let problem = self.record.problems.first().map(|p| p.code.display.clone());
            let lines = letter_lines(
                title,
                name,
                &self.nhs_number,
                self.birth,
                day,
                &self.staff.name_of(&by),
                problem.as_deref(),
            );
            let (mime, content) = if pdf {
                ("application/pdf", document::pdf(&lines))
            } else {
                ("text/plain", document::text(&lines))
            };
            self.record.documents.push(Document {
                meta,
                kind,
                title: title.to_string(),
                date: PartialDate::Day(day),
                mime_type: mime.to_string(),
                content,
                author: by,
            });
        }
    }

    /// Record flags: the type 1 opt-out (patient 3 always, some others), and a historic type 2 code (patient 7).
    fn flags(&mut self) {
        let type1 = self.index == 3 || (self.index > 9 && self.age() >= 16 && self.rng.chance(0.06));
        if type1 {
            let day = self.date_in(date!(2018 - 06 - 01), self.until - Duration::days(1));
            let at = self.daytime(day);
            let by = self.gp();
            self.observation(
                TYPE1_OPT_OUT_CODE,
                ObservationKind::RecordFlag,
                ObservationValue::None,
                day,
                at,
                by,
                None,
                None,
            );
        }
        if self.index == 7 {
            let day = self.date_in(date!(2016 - 01 - 01), date!(2017 - 12 - 31));
            let at = self.daytime(day);
            let by = self.gp();
            self.observation(
                TYPE2_OPT_OUT,
                ObservationKind::RecordFlag,
                ObservationValue::None,
                day,
                at,
                by,
                None,
                None,
            );
        }
    }
}

fn format_nhs(n: &str) -> String {
    if n.len() == 10 {
        format!("{} {} {}", &n[..3], &n[3..6], &n[6..])
    } else {
        n.to_string()
    }
}

fn letter_lines(
    title: &str,
    name: &PersonName,
    nhs: &str,
    birth: Date,
    day: Date,
    gp: &str,
    problem: Option<&str>,
) -> Vec<String> {
    let about = problem.unwrap_or("your recent symptoms");
    let body = match title {
        "Discharge letter" => {
            format!("Discharged home after a short admission. Diagnosis: {about}. No changes to regular medication.")
        }
        "Referral letter" => format!("Thank you for seeing this patient, whom I would like to refer about {about}."),
        "Clinic letter" => format!(
            "Reviewed in clinic today regarding {about}. Plan: continue current treatment; review in six months."
        ),
        "Laboratory report" => "All requested tests were processed. Results have been filed in the record.".to_string(),
        _ => format!("Care plan agreed with the patient for {about}. To be reviewed in twelve months."),
    };
    vec![
        "Sim General Hospital (synthetic test data)".to_string(),
        title.to_string(),
        String::new(),
        format!("Patient: {}", name.display()),
        format!("NHS number: {}", format_nhs(nhs)),
        format!("Date of birth: {birth}"),
        format!("Date: {day}"),
        String::new(),
        format!("Dear {gp},"),
        body,
        String::new(),
        "Yours sincerely,".to_string(),
        "Sim General Hospital".to_string(),
    ]
}
