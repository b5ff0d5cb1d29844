//! Logical ids: opaque, stable, reversible inside the proxy, and impossible to forge.
//!
//! An id packs the practice's ODS code, the native key of the patient whose record holds the item (for
//! items in a record) and the item's own native key, then adds a truncated HMAC over the resource type and
//! all of that. Decoding checks the tag, so a client cannot point an id at another practice, patient or
//! resource type, and a read goes straight to the right native call with no lookup table.
//!
//! Native keys are packed by shape to stay within FHIR's 64 characters: a GUID/UUID is 16 bytes, a run of
//! hex digits is half its length, a decimal run is a varint; anything else is kept as text. A Medicus slot
//! id of 72 characters (`timed-<uuid>-<14 digits>-<14 digits>`) packs to about 36 bytes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const TAG_LEN: usize = 6;
/// 64 base64 characters hold 48 bytes.
const MAX_BYTES: usize = 48;

/// What an id stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalId {
    pub practice: String,
    /// The native key of the patient whose record holds the item; empty for practice-level data and for
    /// the Patient resource itself (whose own key is `item`).
    pub patient: String,
    pub item: String,
}

/// Encodes and decodes ids with the deployment's secret key.
#[derive(Clone)]
pub struct IdCodec {
    /// The MAC with its key already absorbed: each id clones it rather than keying afresh (half the hashing).
    keyed: Hmac<Sha256>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("the native key is too long to fit a FHIR id")]
    TooLong,
    #[error("not an id issued by this server")]
    NotOurs,
}

impl IdCodec {
    pub fn new(key: &[u8]) -> Self {
        IdCodec {
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    pub fn encode(&self, resource_type: &str, id: &LogicalId) -> Result<String, IdError> {
        self.encode_parts(resource_type, &id.practice, &id.patient, &id.item)
    }

    /// As [`IdCodec::encode`], from the parts of a [`LogicalId`] (one id is made per resource translated:
    /// nothing is copied to make it but the id itself).
    pub fn encode_parts(
        &self,
        resource_type: &str,
        practice: &str,
        patient: &str,
        item: &str,
    ) -> Result<String, IdError> {
        let mut payload = Vec::with_capacity(MAX_BYTES);
        pack_practice(practice, &mut payload);
        pack_key(patient, &mut payload);
        pack_key(item, &mut payload);
        // The item runs to the end of the payload: its end marker is implied.
        payload.pop();
        let length = TAG_LEN + payload.len();
        if length > MAX_BYTES {
            return Err(IdError::TooLong);
        }
        let tag = self.mac(resource_type, &payload).finalize().into_bytes();
        let mut bytes = [0u8; MAX_BYTES];
        bytes[..TAG_LEN].copy_from_slice(&tag[..TAG_LEN]);
        bytes[TAG_LEN..length].copy_from_slice(&payload);
        let mut text = [0u8; 64];
        let written = URL_SAFE_NO_PAD
            .encode_slice(&bytes[..length], &mut text)
            .map_err(|_| IdError::TooLong)?;
        // FHIR ids allow `.` but not `_`.
        for c in &mut text[..written] {
            if *c == b'_' {
                *c = b'.';
            }
        }
        String::from_utf8(text[..written].to_vec()).map_err(|_| IdError::TooLong)
    }

    pub fn decode(&self, resource_type: &str, id: &str) -> Result<LogicalId, IdError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(id.replace('.', "_"))
            .map_err(|_| IdError::NotOurs)?;
        if bytes.len() <= TAG_LEN {
            return Err(IdError::NotOurs);
        }
        let (tag, payload) = bytes.split_at(TAG_LEN);
        // Constant-time comparison through the MAC's own verifier.
        if self.mac(resource_type, payload).verify_truncated_left(tag).is_err() {
            return Err(IdError::NotOurs);
        }
        let mut reader = payload;
        let practice = unpack_practice(&mut reader).ok_or(IdError::NotOurs)?;
        let patient = unpack_key(&mut reader).ok_or(IdError::NotOurs)?;
        let mut rest = reader.to_vec();
        rest.push(SEG_END);
        let mut rest_reader = rest.as_slice();
        let item = unpack_key(&mut rest_reader).ok_or(IdError::NotOurs)?;
        if !rest_reader.is_empty() {
            return Err(IdError::NotOurs);
        }
        Ok(LogicalId {
            practice,
            patient,
            item,
        })
    }

    fn mac(&self, resource_type: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(resource_type.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }
}

// Segment kinds inside a packed key.
const SEG_END: u8 = 0;
const SEG_UUID_LOWER: u8 = 1;
const SEG_UUID_UPPER: u8 = 2;
const SEG_HEX_LOWER: u8 = 3;
const SEG_HEX_UPPER: u8 = 4;
const SEG_DECIMAL: u8 = 5;
const SEG_TEXT: u8 = 6;
const SEG_HYPHEN: u8 = 7;

/// ODS codes are short upper-case alphanumerics: packed as base 36 behind one header byte
/// (length << 3 | bytes used); anything else is kept as text behind a zero header.
fn pack_practice(ods: &str, out: &mut Vec<u8>) {
    let packable = (1..=8).contains(&ods.len()) && ods.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    if !packable {
        out.push(0);
        pack_text(ods, out);
        return;
    }
    let value = ods.bytes().fold(0u64, |acc, b| {
        acc * 36 + u64::from(if b.is_ascii_digit() { b - b'0' } else { b - b'A' + 10 })
    });
    let bytes = value.to_be_bytes();
    let used = bytes.iter().skip_while(|b| **b == 0).count().max(1);
    out.push(((ods.len() as u8) << 3) | used as u8);
    out.extend_from_slice(&bytes[8 - used..]);
}

fn unpack_practice(reader: &mut &[u8]) -> Option<String> {
    let (&header, rest) = reader.split_first()?;
    *reader = rest;
    if header == 0 {
        return unpack_text(reader);
    }
    let (len, used) = ((header >> 3) as usize, (header & 7) as usize);
    let bytes = reader.get(..used)?;
    *reader = &reader[used..];
    let mut value = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut chars = vec![b'0'; len];
    for slot in chars.iter_mut().rev() {
        let digit = (value % 36) as u8;
        *slot = if digit < 10 { b'0' + digit } else { b'A' + digit - 10 };
        value /= 36;
    }
    (value == 0).then(|| String::from_utf8(chars).ok()).flatten()
}

fn pack_text(text: &str, out: &mut Vec<u8>) {
    out.push(text.len().min(255) as u8);
    out.extend_from_slice(&text.as_bytes()[..text.len().min(255)]);
}

fn unpack_text(reader: &mut &[u8]) -> Option<String> {
    let (&len, rest) = reader.split_first()?;
    let text = rest.get(..len as usize)?;
    *reader = &rest[len as usize..];
    String::from_utf8(text.to_vec()).ok()
}

/// Packs a native key as a sequence of shaped segments, ended by `SEG_END`. Text that no shape fits is
/// gathered into runs, so a base-62 token costs little more than its length.
fn pack_key(key: &str, out: &mut Vec<u8>) {
    let mut rest = key;
    let mut text = String::new();
    while !rest.is_empty() {
        if let Some(len) = packed_segment(rest, out, &text) {
            rest = &rest[len..];
            text.clear();
            continue;
        }
        let c = rest.chars().next().unwrap_or('?');
        text.push(c);
        rest = &rest[c.len_utf8()..];
        if text.len() >= 250 {
            flush_text(&mut text, out);
        }
    }
    flush_text(&mut text, out);
    out.push(SEG_END);
}

fn flush_text(text: &mut String, out: &mut Vec<u8>) {
    flush_str(text, out);
    text.clear();
}

/// Writes pending text as a text segment, if there is any.
fn flush_str(text: &str, out: &mut Vec<u8>) {
    if !text.is_empty() {
        out.push(SEG_TEXT);
        pack_text(text, out);
    }
}

/// Writes the segment that starts `rest`, if one is worth packing (flushing pending text first), and
/// returns how many bytes of `rest` it took.
fn packed_segment(rest: &str, out: &mut Vec<u8>, pending: &str) -> Option<usize> {
    if rest.starts_with('-') {
        flush_str(pending, out);
        out.push(SEG_HYPHEN);
        return Some(1);
    }
    if let Some((bytes, upper)) = uuid_prefix(rest) {
        flush_str(pending, out);
        out.push(if upper { SEG_UUID_UPPER } else { SEG_UUID_LOWER });
        out.extend_from_slice(&bytes);
        return Some(36);
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
    // A decimal run (no leading zero, fits u64) that is not the start of a longer hex run.
    if (3..=19).contains(&digits) && !rest.starts_with('0') && (hex == digits || hex < 8) {
        let value = rest[..digits].parse::<u64>().ok()?;
        flush_str(pending, out);
        out.push(SEG_DECIMAL);
        push_varint(value, out);
        return Some(digits);
    }
    let run = &rest[..hex.min(510) & !1];
    let lower = run.bytes().all(|b| !b.is_ascii_uppercase());
    let upper = run.bytes().all(|b| !b.is_ascii_lowercase());
    if run.len() >= 8 && (lower || upper) {
        flush_str(pending, out);
        out.push(if lower { SEG_HEX_LOWER } else { SEG_HEX_UPPER });
        out.push((run.len() / 2) as u8);
        for pair in run.as_bytes().chunks(2) {
            out.push(hex_val(pair[0]) << 4 | hex_val(pair[1]));
        }
        return Some(run.len());
    }
    None
}

fn unpack_key(reader: &mut &[u8]) -> Option<String> {
    let mut key = String::new();
    loop {
        let (&kind, rest) = reader.split_first()?;
        *reader = rest;
        match kind {
            SEG_END => return Some(key),
            SEG_UUID_LOWER | SEG_UUID_UPPER => {
                let bytes = reader.get(..16)?;
                let text = uuid::Uuid::from_slice(bytes).ok()?.hyphenated().to_string();
                key.push_str(&if kind == SEG_UUID_UPPER {
                    text.to_ascii_uppercase()
                } else {
                    text
                });
                *reader = &reader[16..];
            }
            SEG_HEX_LOWER | SEG_HEX_UPPER => {
                let (&len, rest) = reader.split_first()?;
                let bytes = rest.get(..len as usize)?;
                for b in bytes {
                    let pair = format!("{b:02x}");
                    key.push_str(&if kind == SEG_HEX_UPPER {
                        pair.to_ascii_uppercase()
                    } else {
                        pair
                    });
                }
                *reader = &rest[len as usize..];
            }
            SEG_DECIMAL => key.push_str(&read_varint(reader)?.to_string()),
            SEG_TEXT => key.push_str(&unpack_text(reader)?),
            SEG_HYPHEN => key.push('-'),
            _ => return None,
        }
    }
}

fn uuid_prefix(text: &str) -> Option<([u8; 16], bool)> {
    let candidate = text.get(..36)?;
    let upper = candidate.bytes().any(|b| b.is_ascii_uppercase());
    let lower = candidate.bytes().any(|b| b.is_ascii_lowercase());
    if upper && lower {
        return None;
    }
    let parsed = uuid::Uuid::try_parse(candidate).ok()?;
    // Only the canonical hyphenated form round-trips.
    let mut buffer = uuid::Uuid::encode_buffer();
    let canonical = if upper {
        parsed.hyphenated().encode_upper(&mut buffer)
    } else {
        parsed.hyphenated().encode_lower(&mut buffer)
    };
    (canonical == candidate).then(|| (*parsed.as_bytes(), upper))
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

fn push_varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_varint(reader: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = reader.split_first()?;
        *reader = rest;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> IdCodec {
        IdCodec::new(b"test-key")
    }

    fn round_trip(patient: &str, item: &str) -> String {
        let id = LogicalId {
            practice: "Y90003".into(),
            patient: patient.into(),
            item: item.into(),
        };
        let text = codec().encode("Slot", &id).unwrap();
        assert!(crate::fhir::rest::is_valid_id(&text), "{text}");
        assert_eq!(codec().decode("Slot", &text).unwrap(), id);
        text
    }

    #[test]
    fn native_keys_of_every_shape_round_trip() {
        round_trip("", "B3C1D2E4-0000-4A1B-9C2D-123456789ABC");
        round_trip("c41d0a9e7b2f6a13", "0a1b2c3d4e5f6071");
        round_trip(
            "4f0c6a2e-8d1b-4c3a-9e57-2b6d8f1a0c93",
            "b9eee80a-cd42-4196-9a6a-fc8bac7ccd4c",
        );
        round_trip("", "55012-20250304093000-20250304094000");
        round_trip("", "880231");
        round_trip("", "007");
        round_trip("", "Zx7Yw5Vu3Ts1Rq9Po8Nm6L");
    }

    #[test]
    fn a_medicus_slot_id_fits_once_its_constant_prefix_is_left_to_the_mapping() {
        let slot = "timed-521d0978-28d9-11eb-adc1-10f5389ebc27-20250304093000-20250304094000";
        assert_eq!(slot.len(), 72);
        let id = round_trip("", slot.strip_prefix("timed-").unwrap());
        assert!(id.len() <= 64);
    }

    #[test]
    fn a_medicus_item_in_a_patients_record_fits() {
        round_trip(
            "4f0c6a2e-8d1b-4c3a-9e57-2b6d8f1a0c93",
            "b9eee80a-cd42-4196-9a6a-fc8bac7ccd4c",
        );
    }

    #[test]
    fn ods_codes_pack_and_others_survive() {
        for ods in ["Y90001", "A81001", "RX1", "RRK02", "weird-ods"] {
            let id = LogicalId {
                practice: ods.into(),
                patient: String::new(),
                item: "1".into(),
            };
            let text = codec().encode("Patient", &id).unwrap();
            assert_eq!(codec().decode("Patient", &text).unwrap(), id);
        }
    }

    #[test]
    fn ids_cannot_be_moved_or_forged() {
        let id = LogicalId {
            practice: "Y90001".into(),
            patient: String::new(),
            item: "ABC".into(),
        };
        let text = codec().encode("Patient", &id).unwrap();
        assert_eq!(codec().decode("Observation", &text), Err(IdError::NotOurs));
        assert_eq!(IdCodec::new(b"other").decode("Patient", &text), Err(IdError::NotOurs));
        // Each payload bit flipped, re-encoded as a valid id: the tag no longer matches (not a base64
        // error, which a flipped last character could be).
        let bytes = URL_SAFE_NO_PAD.decode(text.replace('.', "_")).unwrap();
        for bit in TAG_LEN * 8..bytes.len() * 8 {
            let mut tampered = bytes.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            let forged = URL_SAFE_NO_PAD.encode(&tampered).replace('_', ".");
            assert_eq!(codec().decode("Patient", &forged), Err(IdError::NotOurs), "bit {bit}");
        }
        assert_eq!(codec().decode("Patient", "not-an-id"), Err(IdError::NotOurs));
    }
}
