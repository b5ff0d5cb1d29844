//! `im1-fhir coverage`: which UK Core must-support (and mandatory) elements each supplier's mapping
//! produces, read from the compiled template tree (`mapping::template::Tmpl`), never from sample output.
//!
//! The elements of a resource are those its UK Core profile flags `mustSupport` or gives `min >= 1`, plus the
//! elements base R4 makes mandatory (and the mandatory children of listed backbone elements). An element is
//! `mapped` when the template has a key for it (an extension slice: an extension with the slice's URL),
//! `expression` when an ancestor is produced whole by an expression (the tree cannot see inside it), and
//! `not mapped` otherwise. Slices of other elements (`identifier:nhsNumber`) count as their element.

use crate::mapping::profile::{Defs, Profile};
use crate::mapping::registry::SUPPLIERS;
use crate::mapping::template::{Item, Partial, Tmpl};
use crate::mapping::Registry;
use crate::tree::Tree;
use std::collections::{BTreeMap, HashMap};

/// Whether a template produces an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    NotMapped,
    /// Produced inside a value an expression builds whole.
    Expression,
    Mapped,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Mapped => "mapped",
            Status::Expression => "expression",
            Status::NotMapped => "not mapped",
        }
    }
}

/// One element to cover.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Relative element id: `reaction.severity`, `effective[x]`, `extension:ethnicCategory`.
    pub id: String,
    pub must_support: bool,
    pub min: u32,
    /// For an extension slice: the extension's canonical URL.
    pub extension_url: Option<String>,
}

/// The coverage of one resource type: its wanted elements and, per supplier that maps it, each status.
pub struct ResourceCoverage {
    pub resource: String,
    pub profile: Option<String>,
    pub elements: Vec<Wanted>,
    /// supplier → one status per element.
    pub status: BTreeMap<String, Vec<Status>>,
}

/// Computes the coverage of every resource type the registry maps.
pub fn compute(registry: &Registry) -> Vec<ResourceCoverage> {
    let defs = Defs::get();
    let mut out = Vec::new();
    for resource in registry.resource_types() {
        let url = registry
            .for_resource(resource)
            .next()
            .map(|m| m.profile.clone())
            .unwrap_or_default();
        let profile = defs.profile(&url, resource);
        let elements = wanted(defs, resource, profile);
        let mut status = BTreeMap::new();
        for mapping in registry.for_resource(resource) {
            let row = elements
                .iter()
                .map(|w| produces(&mapping.template, &segments(w), &registry.partials, 0))
                .collect();
            status.insert(mapping.supplier.clone(), row);
        }
        out.push(ResourceCoverage {
            resource: resource.to_string(),
            profile: profile.map(|p| p.name.clone()),
            elements,
            status,
        });
    }
    out
}

fn wanted(defs: &Defs, resource: &str, profile: Option<&Profile>) -> Vec<Wanted> {
    let mut out: Vec<Wanted> = Vec::new();
    for e in profile.map(|p| p.elements.as_slice()).unwrap_or_default() {
        let min = e.min.unwrap_or(0);
        if !(e.must_support || min >= 1) {
            continue;
        }
        // A slice's own children (`identifier:nhsNumber.system`) only matter when the slice is used.
        if e.id.split('.').any(|s| s.contains(':')) && e.id.rsplit('.').next().is_some_and(|s| !s.contains(':')) {
            continue;
        }
        let extension_url = (e.id.rsplit('.').next().unwrap_or("").starts_with("extension:"))
            .then(|| e.profiles.first().cloned())
            .flatten();
        out.push(Wanted {
            id: e.id.clone(),
            must_support: e.must_support,
            min,
            extension_url,
        });
    }
    // Base R4's mandatory elements, at the top and under listed backbone elements.
    let mut extra = Vec::new();
    for element in defs.elements(resource).unwrap_or_default() {
        if element.required {
            extra.push(element.name.clone());
        }
    }
    for w in &out {
        if w.id.contains(['[', ':']) {
            continue;
        }
        if let Ok(ty) = defs.path_type(resource, &w.id) {
            if ty.contains('_') {
                for child in defs.elements(&ty).unwrap_or_default().iter().filter(|c| c.required) {
                    extra.push(format!("{}.{}", w.id, child.name));
                }
            }
        }
    }
    for id in extra {
        match out.iter_mut().find(|w| w.id == id) {
            Some(w) => w.min = w.min.max(1),
            None => out.push(Wanted {
                id,
                must_support: false,
                min: 1,
                extension_url: None,
            }),
        }
    }
    out
}

/// A step down the template: an element name (`value[x]` matches any `valueXxx`), or an extension slice.
enum Segment {
    Name(String),
    Choice(String),
    Extension(String),
}

fn segments(w: &Wanted) -> Vec<Segment> {
    let parts: Vec<&str> = w.id.split('.').collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let (name, slice) = part.split_once(':').unwrap_or((part, ""));
            if name == "extension" && !slice.is_empty() && i == parts.len() - 1 {
                if let Some(url) = &w.extension_url {
                    return Segment::Extension(url.clone());
                }
            }
            match name.strip_suffix("[x]") {
                Some(prefix) => Segment::Choice(prefix.to_string()),
                None => Segment::Name(name.to_string()),
            }
        })
        .collect()
}

fn matches(segment: &Segment, key: &str) -> bool {
    match segment {
        Segment::Name(name) => key == name,
        Segment::Choice(prefix) => crate::mapping::profile::choice_type(key, prefix).is_some(),
        Segment::Extension(_) => key == "extension",
    }
}

/// Whether `tmpl` produces the element at `path` below it.
fn produces(
    tmpl: &Tmpl,
    path: &[Segment],
    partials: &HashMap<String, std::sync::Arc<Partial>>,
    depth: usize,
) -> Status {
    let Some((first, rest)) = path.split_first() else {
        return Status::Mapped;
    };
    if depth > 32 {
        return Status::NotMapped;
    }
    match tmpl {
        Tmpl::Object { fields, .. } => {
            let mut best = Status::NotMapped;
            for (_, field) in fields.iter().filter(|(k, _)| matches(first, k)) {
                let found = match first {
                    Segment::Extension(url) => extension_with_url(field, url, rest, partials, depth),
                    _ => produces(field, rest, partials, depth + 1),
                };
                best = best.max(found);
            }
            best
        }
        Tmpl::Array(items) => items
            .iter()
            .map(|item| match item {
                Item::One(t) => produces(t, path, partials, depth + 1),
                Item::Each { body, .. } => produces(body, path, partials, depth + 1),
            })
            .max()
            .unwrap_or(Status::NotMapped),
        Tmpl::Partial { name, .. } => partials
            .get(name)
            .map_or(Status::Expression, |p| produces(&p.body, path, partials, depth + 1)),
        Tmpl::Lit(value) => lit_has(value, path),
        Tmpl::Path(_) | Tmpl::Expr { .. } | Tmpl::Interp(_) => Status::Expression,
    }
}

/// An `extension` list holding an item whose `url` is `url` (and, below it, the rest of the path).
fn extension_with_url(
    tmpl: &Tmpl,
    url: &str,
    rest: &[Segment],
    partials: &HashMap<String, std::sync::Arc<Partial>>,
    depth: usize,
) -> Status {
    let item_matches = |t: &Tmpl| match t {
        Tmpl::Object { fields, .. } => fields
            .iter()
            .any(|(k, v)| k == "url" && matches!(v, Tmpl::Lit(Tree::String(u)) if u == url)),
        _ => false,
    };
    match tmpl {
        Tmpl::Array(items) => items
            .iter()
            .map(|item| {
                let t = match item {
                    Item::One(t) => t,
                    Item::Each { body, .. } => body,
                };
                if item_matches(t) {
                    produces(t, rest, partials, depth + 1)
                } else if matches!(t, Tmpl::Object { .. } | Tmpl::Lit(_)) {
                    Status::NotMapped
                } else {
                    // A partial or expression building extensions: it may or may not hold this one.
                    Status::Expression
                }
            })
            .max()
            .unwrap_or(Status::NotMapped),
        Tmpl::Lit(_) | Tmpl::Object { .. } => Status::NotMapped,
        _ => Status::Expression,
    }
}

fn lit_has(value: &Tree, path: &[Segment]) -> Status {
    let Some((first, rest)) = path.split_first() else {
        return Status::Mapped;
    };
    match value {
        Tree::Object(map) => map
            .iter()
            .filter(|(k, _)| matches(first, k))
            .map(|(_, v)| lit_has(v, rest))
            .max()
            .unwrap_or(Status::NotMapped),
        Tree::Array(items) => items
            .iter()
            .map(|v| lit_has(v, path))
            .max()
            .unwrap_or(Status::NotMapped),
        _ => Status::NotMapped,
    }
}

/// One line per supplier: how many wanted elements its mappings produce.
pub fn summary(coverage: &[ResourceCoverage]) -> Vec<String> {
    SUPPLIERS
        .iter()
        .map(|supplier| {
            let (mut resources, mut total, mut mapped, mut expression) = (0, 0, 0, 0);
            for rc in coverage {
                let Some(row) = rc.status.get(*supplier) else { continue };
                resources += 1;
                total += row.len();
                mapped += row.iter().filter(|s| **s == Status::Mapped).count();
                expression += row.iter().filter(|s| **s == Status::Expression).count();
            }
            format!(
                "{supplier}: {} of {total} must-support/mandatory elements mapped ({mapped} by template keys, \
                 {expression} inside expressions) across {resources} resource types",
                mapped + expression
            )
        })
        .collect()
}

/// The report as a Markdown table: one row per resource × element, one column per supplier.
pub fn markdown(coverage: &[ResourceCoverage]) -> String {
    let mut out = String::from("| resource | element | flags |");
    for s in SUPPLIERS {
        out.push_str(&format!(" {s} |"));
    }
    out.push_str("\n|---|---|---|");
    out.push_str(&"---|".repeat(SUPPLIERS.len()));
    out.push('\n');
    for rc in coverage {
        for (i, w) in rc.elements.iter().enumerate() {
            out.push_str(&format!("| {} | `{}` | {} |", rc.resource, w.id, flags(w)));
            for s in SUPPLIERS {
                let cell = rc.status.get(*s).map_or("(no mapping)", |row| row[i].label());
                out.push_str(&format!(" {cell} |"));
            }
            out.push('\n');
        }
    }
    out.push('\n');
    for line in summary(coverage) {
        out.push_str(&format!("- {line}\n"));
    }
    out
}

/// The report as CSV: one row per supplier × resource × element.
pub fn csv(coverage: &[ResourceCoverage]) -> String {
    let mut out = String::from("supplier,resource,profile,element,must_support,min,status\n");
    for rc in coverage {
        for (supplier, row) in &rc.status {
            for (w, status) in rc.elements.iter().zip(row) {
                out.push_str(&format!(
                    "{supplier},{},{},{},{},{},{}\n",
                    rc.resource,
                    rc.profile.as_deref().unwrap_or(""),
                    w.id,
                    w.must_support,
                    w.min,
                    status.label()
                ));
            }
        }
    }
    for line in summary(coverage) {
        out.push_str(&format!("# {line}\n"));
    }
    out
}

fn flags(w: &Wanted) -> String {
    match (w.must_support, w.min) {
        (true, 0) => "MS".into(),
        (true, m) => format!("MS, min {m}"),
        (false, m) => format!("min {m}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Source;

    #[test]
    fn the_shipped_mappings_cover_the_mandatory_elements() {
        let registry = Registry::load(&Source::Embedded).unwrap_or_else(|p| panic!("{p:?}"));
        let coverage = compute(&registry);
        let allergy = coverage.iter().find(|c| c.resource == "AllergyIntolerance").unwrap();
        let code = allergy.elements.iter().position(|w| w.id == "code").unwrap();
        for row in allergy.status.values() {
            assert_eq!(row[code], Status::Mapped);
        }
        let observation = coverage.iter().find(|c| c.resource == "Observation").unwrap();
        let effective = observation
            .elements
            .iter()
            .position(|w| w.id == "effective[x]")
            .unwrap();
        assert_eq!(observation.status["emis"][effective], Status::Mapped);
        assert!(markdown(&coverage).contains("| AllergyIntolerance | `code` | MS, min 1 |"));
    }
}
