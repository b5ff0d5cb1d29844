//! All mapping files, partials and ConceptMaps, loaded and compiled together at start-up (and by
//! `im1-fhir check`). Loading reports every problem at once; a broken mapping never reaches a request.

use super::concept_map::{ConceptMap, ConceptMaps};
use super::expr::Engine;
use super::file::{self, MappingFile};
use super::problem::{Problem, Problems};
use super::profile;
use super::template::{self, Partial, Site};
use super::yaml::{self, Pos};
use include_dir::{include_dir, Dir};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

static EMBEDDED_MAPPINGS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/mappings");
static EMBEDDED_CONCEPT_MAPS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/conformance/ConceptMap");

/// The suppliers a mapping folder may hold.
pub const SUPPLIERS: &[&str] = &["emis", "systmone", "medicus"];

/// Where mapping files come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The files compiled into the binary.
    Embedded,
    /// A folder laid out like `mappings/` (`--mappings DIR`).
    Dir(PathBuf),
}

/// A loaded, compiled, linked set of mappings.
pub struct Registry {
    pub mappings: Vec<MappingFile>,
    pub partials: HashMap<String, Arc<Partial>>,
    pub concept_maps: Arc<ConceptMaps>,
}

impl Registry {
    /// Loads everything, or returns every problem found.
    pub fn load(source: &Source) -> Result<Registry, Vec<Problem>> {
        let mut problems = Problems::default();
        let concept_maps = Arc::new(load_concept_maps(source, &mut problems));
        let engine = Engine::new(concept_maps.clone());
        let files = match source {
            Source::Embedded => embedded_files(),
            Source::Dir(dir) => {
                let (files, unreadable) = dir_files(dir);
                // Said, and the other files still checked: every problem at once.
                for (name, e) in unreadable {
                    problems.add(&name, Pos { line: 1, col: 1 }, "", e);
                }
                files
            }
        };
        let has_map = |name: &str| concept_maps.get(name).is_some();
        let mut site = Site {
            file: "",
            engine: &engine,
            vars: Vec::new(),
            concept_maps: &has_map,
        };
        let mut mappings = Vec::new();
        let mut partials = HashMap::new();
        let mut partial_sites: Vec<(String, String, Pos)> = Vec::new();
        // For the profile check: partial bodies, and the types their callers expect.
        let mut partial_nodes: HashMap<String, (String, yaml::Node)> = HashMap::new();
        let mut partial_uses = Vec::new();
        for (name, text) in &files {
            let node = match yaml::parse(text) {
                Ok(node) => node,
                Err(e) => {
                    problems.add(name, e.pos, "", format!("YAML syntax: {}", e.message));
                    continue;
                }
            };
            site.file = name;
            let stem = Path::new(name).file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if let Some(partial_name) = stem.strip_prefix('_') {
                file::unknown_keys(name, &node, "", &["params", "template", "description"], &mut problems);
                let params: Vec<String> = match node.get("params").map(|n| &n.value) {
                    Some(yaml::NodeValue::Seq(items)) => {
                        items.iter().filter_map(|i| i.as_str().map(String::from)).collect()
                    }
                    _ => Vec::new(),
                };
                site.vars = params.clone();
                let Some(body_node) = node.get("template") else {
                    problems.add(name, node.pos, "template", "a partial needs a template");
                    continue;
                };
                let body = template::compile(body_node, "template", &mut site, &mut problems);
                partial_nodes.insert(partial_name.to_string(), (name.clone(), body_node.clone()));
                if partials
                    .insert(
                        partial_name.to_string(),
                        Arc::new(Partial {
                            file: name.clone(),
                            params,
                            body,
                        }),
                    )
                    .is_some()
                {
                    problems.add(name, node.pos, "", format!("partial '{partial_name}' is defined twice"));
                }
                partial_sites.push((partial_name.to_string(), name.clone(), node.pos));
                continue;
            }
            let supplier = name.split('/').next().unwrap_or("");
            if !SUPPLIERS.contains(&supplier) {
                problems.add(
                    name,
                    node.pos,
                    "",
                    format!(
                        "mapping files live under a supplier's folder ({}) or are shared partials (shared/_Name.yaml)",
                        SUPPLIERS.join("/, ") + "/"
                    ),
                );
                continue;
            }
            if let Some(mapping) = file::read_mapping(name, supplier, &node, &mut site, &mut problems) {
                if stem != mapping.resource {
                    problems.add(
                        name,
                        mapping.pos,
                        "resource",
                        format!("the file is named {stem} but maps {}", mapping.resource),
                    );
                }
                partial_uses.extend(profile::check_mapping(name, &node, &mapping.resource, &mut problems));
                mappings.push(mapping);
            }
        }
        profile::check_partials(partial_uses, &partial_nodes, &mut problems);
        link_partials(&mappings, &partials, &mut problems);
        if problems.is_empty() {
            Ok(Registry {
                mappings,
                partials,
                concept_maps,
            })
        } else {
            let mut list = problems.list;
            list.sort_by(|a, b| (&a.file, a.pos.line, a.pos.col).cmp(&(&b.file, b.pos.line, b.pos.col)));
            // A folder's files are named as they can be opened from where `check` ran (`m1/emis/Condition.yaml`).
            if let Source::Dir(dir) = source {
                for problem in &mut list {
                    if !problem.file.starts_with("conformance/") {
                        problem.file = dir.join(&problem.file).display().to_string();
                    }
                }
            }
            Err(list)
        }
    }

    /// What the mappings leave unserved: nothing at all mapped, or a supplier a configured practice runs
    /// without any mapping (every request to it would be a 404). `check` and `serve` both refuse it.
    pub fn gaps<'s>(&self, suppliers: impl IntoIterator<Item = &'s str>) -> Vec<String> {
        if self.mappings.is_empty() {
            return vec!["no mapping files were found".to_string()];
        }
        let mut gaps: Vec<String> = Vec::new();
        for supplier in suppliers {
            let said = format!("no mapping files for {supplier}, which a configured practice runs");
            if !self.mappings.iter().any(|m| m.supplier == supplier) && !gaps.contains(&said) {
                gaps.push(said);
            }
        }
        gaps
    }

    pub fn get(&self, supplier: &str, resource: &str) -> Option<&MappingFile> {
        self.mappings
            .iter()
            .find(|m| m.supplier == supplier && m.resource == resource)
    }

    /// A search parameter of a resource type, as the mappings declare it (the same name means the same
    /// parameter at every supplier).
    pub fn param(&self, resource: &str, name: &str) -> Option<&super::file::ParamDef> {
        self.mappings
            .iter()
            .filter(|m| m.resource == resource)
            .flat_map(|m| m.params.iter())
            .find(|d| d.name == name)
    }

    /// A type's date parameters in the order its mappings declare them.
    pub fn date_params<'s: 'r, 'r>(
        &'s self,
        resource: &'r str,
    ) -> impl Iterator<Item = &'s super::file::ParamDef> + 'r {
        self.mappings
            .iter()
            .filter(move |m| m.resource == resource)
            .flat_map(|m| m.params.iter())
            .filter(|d| d.kind == super::file::ParamType::Date)
    }

    /// A type's first date parameter as its mappings declare them (the date its matches are ordered by when a
    /// search asks for no order).
    pub fn first_date_param(&self, resource: &str) -> Option<&super::file::ParamDef> {
        self.date_params(resource).next()
    }

    /// Where a resource type lives (the same for every supplier that maps it).
    pub fn compartment_of(&self, resource: &str) -> Option<super::Compartment> {
        self.mappings
            .iter()
            .find(|m| m.resource == resource)
            .map(|m| m.compartment)
    }

    /// Every resource type mapped for at least one supplier.
    pub fn resource_types(&self) -> BTreeSet<&str> {
        self.mappings.iter().map(|m| m.resource.as_str()).collect()
    }

    /// Whether some supplier's mapping of a type searches it (Medication and Binary are read by id only).
    pub fn is_searched(&self, resource: &str) -> bool {
        self.for_resource(resource).any(|m| m.search.is_some())
    }

    /// Whether some supplier's mapping of a type reads it by id.
    pub fn is_read(&self, resource: &str) -> bool {
        self.for_resource(resource).any(|m| m.read.is_some())
    }

    /// The mappings of one resource type, one per supplier that has it.
    pub fn for_resource<'a>(&'a self, resource: &'a str) -> impl Iterator<Item = &'a MappingFile> + 'a {
        self.mappings.iter().filter(move |m| m.resource == resource)
    }
}

/// Points every partial call at its partial (templates run without looking partials up), reporting the
/// calls of partials that do not exist.
fn link_partials(mappings: &[MappingFile], partials: &HashMap<String, Arc<Partial>>, problems: &mut Problems) {
    // Each unknown partial is reported where it is called.
    let mut link = |file: &str, tmpl: &template::Tmpl| {
        let mut bad = Vec::new();
        template::link(tmpl, partials, &mut bad);
        for call in bad {
            let (message, at) = match call {
                template::BadCall::Unknown(name, at) => {
                    let hint = partials
                        .keys()
                        .find(|k| file::edit_distance(k, &name) <= 2)
                        .map(|k| format!(" (did you mean '{k}'?)"))
                        .unwrap_or_default();
                    (format!("unknown partial '{name}'{hint}"), at)
                }
                template::BadCall::Arity(name, params, given, at) => (
                    format!(
                        "partial '{name}' takes {} argument(s) ({}), not {given}",
                        params.len(),
                        params.join(", ")
                    ),
                    at,
                ),
            };
            let (pos, path) = &*at;
            problems.add(file, *pos, path, message);
        }
    };
    for m in mappings {
        for (_, tmpl) in m.templates() {
            link(&m.file, tmpl);
        }
    }
    for partial in partials.values() {
        link(&partial.file, &partial.body);
    }
}

/// The ConceptMaps: those built in, then, for mappings read from a folder, those in its `ConceptMap/` folder
/// (`*.json`), each added, or in place of the built-in map with its id: a mapping that needs a new map is
/// checked and served with it, without a rebuild.
fn load_concept_maps(source: &Source, problems: &mut Problems) -> ConceptMaps {
    let mut maps = ConceptMaps::default();
    let mut add = |name: &str, bytes: &[u8], problems: &mut Problems| {
        let parsed = serde_json::from_slice(bytes).map_err(|e| (e.line().max(1), e.column().max(1), e.to_string()));
        match parsed.and_then(|resource| ConceptMap::from_resource(resource).map_err(|e| (1, 1, e))) {
            Ok(map) => maps.insert(map),
            Err((line, col, e)) => problems.add(name, Pos { line, col }, "", e),
        }
    };
    for file in EMBEDDED_CONCEPT_MAPS.files() {
        let name = format!("conformance/ConceptMap/{}", file.path().display());
        add(&name, file.contents(), problems);
    }
    if let Source::Dir(dir) = source {
        let folder = dir.join("ConceptMap");
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            // Named under the folder given, as the mapping files are.
            let name = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
            match std::fs::read(&path) {
                Ok(bytes) => add(&name, &bytes, problems),
                Err(e) => problems.add(&name, Pos { line: 1, col: 1 }, "", format!("cannot read: {e}")),
            }
        }
    }
    maps
}

fn embedded_files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    collect_embedded(&EMBEDDED_MAPPINGS, &mut out);
    out.sort();
    out
}

fn collect_embedded(dir: &Dir, out: &mut Vec<(String, String)>) {
    for file in dir.files() {
        if file.path().extension().is_some_and(|e| e == "yaml") {
            if let Some(text) = file.contents_utf8() {
                out.push((file.path().display().to_string(), text.to_string()));
            }
        }
    }
    for sub in dir.dirs() {
        collect_embedded(sub, out);
    }
}

/// Files by name, each with its text or, for those that could not be read, why.
type Named = Vec<(String, String)>;

/// The mapping files under `root`, by path relative to it, and those (or folders) that could not be read
/// (not UTF-8, say), with why.
fn dir_files(root: &Path) -> (Named, Named) {
    let (mut out, mut unreadable) = (Vec::new(), Vec::new());
    let mut stack = vec![root.to_path_buf()];
    let name = |path: &Path| path.strip_prefix(root).unwrap_or(path).display().to_string();
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                unreadable.push((name(&dir), format!("cannot read the folder: {e}")));
                continue;
            }
        };
        for entry in entries {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(e) => {
                    unreadable.push((name(&dir), e.to_string()));
                    continue;
                }
            };
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml") {
                // Not read, so a mapping saved so would silently serve nothing.
                unreadable.push((name(&path), "mapping files end in .yaml: this one is not read".into()));
            } else if path.extension().is_some_and(|e| e == "yaml") {
                match std::fs::read_to_string(&path) {
                    Ok(text) => out.push((name(&path), text)),
                    Err(e) => unreadable.push((name(&path), format!("cannot read: {e}"))),
                }
            }
        }
    }
    out.sort();
    unreadable.sort();
    (out, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_that_leave_a_configured_supplier_unserved_are_said() {
        let registry = Registry::load(&Source::Embedded).unwrap();
        assert!(registry.gaps(["emis", "systmone", "medicus", "emis"]).is_empty());
        assert_eq!(
            registry.gaps(["emis", "vision", "vision"]),
            vec!["no mapping files for vision, which a configured practice runs"]
        );
        let empty = tempfile::tempdir().unwrap();
        let none = Registry::load(&Source::Dir(empty.path().to_path_buf())).unwrap();
        assert_eq!(none.gaps(["emis"]), vec!["no mapping files were found"]);
    }
}
