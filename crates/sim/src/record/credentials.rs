//! Linkage credentials per patient per practice, derived from the seed by hashing (not from the random
//! streams), so they do not move when the generator's content changes.
//!
//! Shapes: account-id + linkage-key practices get a 10-digit Account ID and a 15-character Linkage Key;
//! account-id + passphrase practices a 9-digit account id and an `XXXX-XXXX` passphrase; linkage-token
//! practices a token `{ods lower-case}-{6 digits}-{6 digits}`. Deceased patients get none.

use super::ids::{Nid, Supplier};
use super::model::{LinkageCredentials, LinkageSecret, Patient, Practice};
use sha2::{Digest, Sha256};

const KEY_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
const PASSPHRASE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

fn hash(seed: u64, label: &str, ods: &str, pid: &Nid) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"im1-sim credentials v1\0");
    h.update(seed.to_be_bytes());
    for part in [label, ods, pid.as_str()] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    h.finalize().into()
}

fn digits(bytes: &[u8], n: usize) -> String {
    let mut v = u128::from_be_bytes(bytes[..16].try_into().unwrap_or([0; 16]));
    let mut s = String::with_capacity(n);
    for _ in 0..n {
        s.push(char::from(b'0' + (v % 10) as u8));
        v /= 10;
    }
    s
}

fn chars(bytes: &[u8], alphabet: &[u8], n: usize) -> String {
    bytes
        .iter()
        .take(n)
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect()
}

/// The NHS login subject of a patient (the same at every practice).
pub fn nhs_login_sub(seed: u64, pid: &Nid) -> String {
    let h = hash(seed, "nhs-login-sub", "", pid);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().hyphenated().to_string()
}

/// The credentials of one patient at one practice.
pub fn for_patient(seed: u64, practice: &Practice, patient: &Patient) -> LinkageCredentials {
    let h = hash(seed, "linkage", &practice.ods, &patient.id);
    let secret = match practice.supplier {
        Supplier::Emis => LinkageSecret::AccountLinkageKey {
            account_id: format!("{}{}", 1 + h[0] % 9, digits(&h[1..], 9)),
            linkage_key: chars(&h[17..], KEY_ALPHABET, 15),
            ods_code: practice.ods.clone(),
        },
        Supplier::SystmOne => LinkageSecret::AccountPassphrase {
            account_id: format!("1{}", digits(&h[1..], 8)),
            passphrase: format!(
                "{}-{}",
                chars(&h[17..], PASSPHRASE_ALPHABET, 4),
                chars(&h[21..], PASSPHRASE_ALPHABET, 4)
            ),
        },
        Supplier::Medicus => LinkageSecret::LinkageToken {
            token: format!(
                "{}-{}-{}",
                practice.ods.to_lowercase(),
                digits(&h[1..], 6),
                digits(&h[16..], 6)
            ),
        },
    };
    LinkageCredentials {
        practice: practice.ods.clone(),
        patient: patient.id.clone(),
        nhs_number: patient.nhs_number.clone(),
        nhs_login_sub: nhs_login_sub(seed, &patient.id),
        secret,
    }
}

/// Credentials for every living patient at every practice, practice by practice.
pub fn for_patients(seed: u64, practices: &[Practice], patients: &[Patient]) -> Vec<LinkageCredentials> {
    practices
        .iter()
        .flat_map(|pr| {
            patients
                .iter()
                .filter(|p| p.deceased_at.is_none())
                .map(move |p| for_patient(seed, pr, p))
        })
        .collect()
}
