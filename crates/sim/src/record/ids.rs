//! Neutral item ids and the native ids each supplier's simulator derives from them.
//!
//! Every item in the record has one supplier-neutral id ([`Nid`], e.g. `P0007-ALG-01`). A simulator never
//! stores its own ids: it derives them with [`native_id`], a SHA-256 hash keyed by the supplier and the neutral
//! id, so all simulators (and tests) agree without sharing state. The [`super::World`] keeps a reverse index
//! so a native id from a request finds its item again.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;

/// A supplier-neutral item id. Stable for a given seed and patient count; unique within a record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Nid(pub String);

impl Nid {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Nid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Nid {
    fn from(s: String) -> Self {
        Nid(s)
    }
}

/// The three GP system suppliers whose simulators render the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Supplier {
    Emis,
    SystmOne,
    Medicus,
}

impl Supplier {
    /// All suppliers, in a fixed order.
    pub const ALL: [Supplier; 3] = [Supplier::Emis, Supplier::SystmOne, Supplier::Medicus];

    fn hash_key(self) -> &'static [u8] {
        match self {
            Supplier::Emis => b"emis",
            Supplier::SystmOne => b"systmone",
            Supplier::Medicus => b"medicus",
        }
    }
}

/// SHA-256 of (domain tag, supplier, neutral id): the root of every native id.
fn keyed_hash(supplier: Supplier, nid: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"im1-sim native id v1\0");
    h.update(supplier.hash_key());
    h.update(b"\0");
    h.update(nid.as_bytes());
    h.finalize().into()
}

fn uuid_from_hash(hash: &[u8; 32]) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    // Version/variant bits make it a well-formed (random-style) UUID; the rest is the hash.
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The native id a supplier uses for a neutral id: EMIS an upper-case GUID without braces, SystmOne 16
/// lower-case hex digits, Medicus a lower-case hyphenated UUID.
pub fn native_id(supplier: Supplier, nid: &Nid) -> String {
    let hash = keyed_hash(supplier, nid.as_str());
    match supplier {
        Supplier::Emis => uuid_from_hash(&hash).hyphenated().to_string().to_ascii_uppercase(),
        Supplier::SystmOne => hash[..8].iter().map(|b| format!("{b:02x}")).collect(),
        Supplier::Medicus => uuid_from_hash(&hash).hyphenated().to_string(),
    }
}

/// A second, independent id for the same item and supplier (e.g. a Medicus document's `file.id` beside the
/// element id), derived from the neutral id plus a purpose label.
pub fn native_sub_id(supplier: Supplier, nid: &Nid, purpose: &str) -> String {
    native_id(supplier, &Nid(format!("{}#{purpose}", nid.as_str())))
}
