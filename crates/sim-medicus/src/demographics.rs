//! Patients and staff. PFS: the NHS number only (the one demographics call known); Transactional search is extended
//! with everything the record holds (invented fields marked in DIALECT.md).

use crate::style::{date, datetime, nid};
use im1_sim::record::{Address, ContactUse, Gender, Patient, PersonName, Practitioner, Record, StaffRole, Telecom};
use serde_json::{json, Value};
use time::Date;

/// `Female`, `Male`, `Other`, `Unknown`.
pub fn gender(g: Gender) -> &'static str {
    match g {
        Gender::Female => "Female",
        Gender::Male => "Male",
        Gender::Other => "Other",
        Gender::Unknown => "Unknown",
    }
}

/// Invented display style (as in medicus.md B2): title, given names, family name in capitals (`Ms Alex TESTER`).
pub fn display_name(n: &PersonName) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(n.title.clone());
    parts.extend(n.given.iter().cloned());
    parts.push(n.family.to_uppercase());
    parts.join(" ")
}

fn name_parts(n: &PersonName) -> Value {
    json!({"title": n.title, "givenNames": n.given, "familyName": n.family})
}

pub fn address(a: &Address) -> Value {
    let lines = a.lines();
    json!({
        "line1": lines.first(),
        "line2": lines.get(1),
        "line3": lines.get(2),
        "locality": a.town,
        "administrativeArea": a.county,
        "postalCode": a.postcode,
        "country": "United Kingdom",
    })
}

fn telecom(t: &Telecom) -> Value {
    match t {
        Telecom::Phone { value, use_ } => json!({"system": "phone", "value": value, "use": match use_ {
            ContactUse::Home => "home",
            ContactUse::Mobile => "mobile",
            ContactUse::Work => "work",
        }}),
        Telecom::Email { value } => json!({"system": "email", "value": value, "use": null}),
    }
}

/// Whole years between a birth date and a day.
fn age(birth: Date, on: Date) -> i32 {
    let mut years = on.year() - birth.year();
    if (u8::from(on.month()), on.day()) < (u8::from(birth.month()), birth.day()) {
        years -= 1;
    }
    years
}

/// The Transactional patient shape (`patient/find` results and `GET patient/{id}`).
pub fn patient(r: &Record, p: &Patient, ods: &str, today: Date) -> Value {
    let reg = p.registration(ods);
    let usual_gp = reg
        .and_then(|g| r.practitioner(&g.usual_gp))
        .map(|gp| json!({"id": nid(&gp.id), "name": gp.name.display()}));
    json!({
        "id": nid(&p.id),
        "name": display_name(&p.name),
        "age": age(p.birth_date, p.deceased_at.map_or(today, |d| d.date())).to_string(),
        "genderIdentity": gender(p.gender),
        "homeAddress": address(&p.address),
        "dateOfBirth": date(p.birth_date),
        "nhsNumber": p.nhs_number,
        "title": p.name.title,
        "givenNames": p.name.given,
        "familyName": p.name.family,
        "previousNames": p.previous_names.iter().map(|n| {
            let mut v = name_parts(&n.name);
            v["usedUntil"] = json!(date(n.until));
            v
        }).collect::<Vec<_>>(),
        "telecom": p.telecom.iter().map(telecom).collect::<Vec<_>>(),
        "deceasedDateTime": p.deceased_at.map(datetime),
        "active": p.deceased_at.is_none(),
        "ethnicity": p.ethnicity.as_ref().map(|e| json!({"system": e.system, "code": e.code, "display": e.display})),
        "registration": reg.map(|g| json!({
            "organisationOdsCode": g.practice,
            "registrationDate": date(g.registered_on),
            "usualGp": usual_gp,
        })),
    })
}

/// Whether a `patient/find` query matches: patient id, NHS number, any part of a name (current or former), or
/// `DD.MM.YYYY`.
pub fn matches(p: &Patient, query: &str) -> bool {
    let q = query.trim();
    if q.is_empty() {
        return false;
    }
    let b = p.birth_date;
    let dob = format!("{:02}.{:02}.{:04}", b.day(), u8::from(b.month()), b.year());
    if q == p.nhs_number || q == nid(&p.id) || q == dob {
        return true;
    }
    let lower = im1_sim::record::fold(q);
    let mut names: Vec<&str> = p.name.given.iter().map(String::as_str).collect();
    names.push(&p.name.family);
    // Former surnames are names of the patient too.
    names.extend(p.previous_names.iter().map(|n| n.name.family.as_str()));
    names.iter().any(|n| im1_sim::record::fold(n).contains(&lower))
        || im1_sim::record::fold(&display_name(&p.name)).contains(&lower)
}

fn role(r: StaffRole) -> &'static str {
    match r {
        StaffRole::GeneralPractitioner => "general-practitioner",
        StaffRole::PracticeNurse => "practice-nurse",
        StaffRole::Pharmacist => "pharmacist",
        StaffRole::HealthcareAssistant => "healthcare-assistant",
    }
}

/// One practitioner (invented `GET .../practitioners`).
pub fn practitioner(p: &Practitioner, ods: &str) -> Value {
    json!({
        "id": nid(&p.id),
        "name": p.name.display(),
        "title": p.name.title,
        "givenNames": p.name.given,
        "familyName": p.name.family,
        "gender": gender(p.gender),
        "professionalRegistrationNumber": p.registration_number,
        "roles": p.roles.iter().filter(|x| x.practice == ods)
            .map(|x| json!({"id": nid(&x.id), "role": role(x.role), "organisationOdsCode": x.practice}))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn age_counts_whole_years() {
        assert_eq!(age(date!(1985 - 04 - 12), date!(2025 - 04 - 11)), 39);
        assert_eq!(age(date!(1985 - 04 - 12), date!(2025 - 04 - 12)), 40);
    }
}
