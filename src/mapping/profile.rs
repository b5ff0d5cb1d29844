//! What a mapping may produce: FHIR R4 element definitions per type (`profiles/r4-elements.txt`, generated
//! by `tools/r4_elements.py` from HL7's R4 JSON schema), the R4 search parameters
//! (`profiles/r4-search-params.tsv`) and the UK Core StructureDefinitions the product maps
//! (`profiles/ukcore/*.xml`, copied unchanged; differentials only). All are embedded and read once.
//!
//! `check_template` and `check_params` add to `im1-fhir check` (and start-up): every template key that is not
//! an element of its type, every search parameter R4 does not define for the resource (or defines with
//! another type), and every UK Core extension URL that no profile defines.

use super::file::edit_distance;
use super::problem::{child, index, Problems};
use super::yaml::{Node, NodeValue};
use crate::tree::Tree;
use include_dir::{include_dir, Dir};
use std::collections::HashMap;
use std::sync::OnceLock;

static UKCORE: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/profiles/ukcore");
const R4_ELEMENTS: &str = include_str!("../../profiles/r4-elements.txt");
const R4_SEARCH_PARAMS: &str = include_str!("../../profiles/r4-search-params.tsv");
const R4_CODE_SYSTEMS: &str = include_str!("../../profiles/r4-code-systems.txt");

/// The canonical URL prefix of UK Core StructureDefinitions.
pub const UKCORE_SD: &str = "https://fhir.hl7.org.uk/StructureDefinition/";

/// One element of an R4 type, by its JSON name (choice elements appear once per type: `valueQuantity`).
#[derive(Debug, Clone)]
pub struct Element {
    pub name: String,
    /// A type name: a complex type or backbone (`Observation_Component`) has its own entry in `Defs::types`;
    /// anything else is a primitive. `Resource` stands for any resource (`contained`).
    pub ty: String,
    pub required: bool,
    pub repeats: bool,
}

/// An element a UK Core profile constrains (from its differential).
#[derive(Debug, Clone)]
pub struct ProfileElement {
    /// The element id without the resource type: `reaction.severity`, `identifier:nhsNumber.system`,
    /// `effective[x]`, `extension:ethnicCategory`.
    pub id: String,
    pub min: Option<u32>,
    pub max: Option<String>,
    pub must_support: bool,
    /// Type codes and profiles named by the element (`Extension` + the extension's canonical URL).
    pub types: Vec<String>,
    pub profiles: Vec<String>,
}

/// A UK Core StructureDefinition (a resource profile or an extension).
#[derive(Debug, Clone)]
pub struct Profile {
    pub url: String,
    pub name: String,
    /// The constrained type (`Patient`, `Extension`).
    pub ty: String,
    pub elements: Vec<ProfileElement>,
}

impl Profile {
    /// For a simple extension, the value types it allows (`CodeableConcept`, `dateTime`); empty when the
    /// extension is complex (its value is made of sub-extensions) or says nothing.
    pub fn value_types(&self) -> Vec<String> {
        self.elements
            .iter()
            .find(|e| e.id == "value[x]" && e.max.as_deref() != Some("0"))
            .map(|e| e.types.clone())
            .unwrap_or_default()
    }
}

/// Everything known about R4 and UK Core.
pub struct Defs {
    pub types: HashMap<String, Vec<Element>>,
    /// (resource or `Resource`, code) → type.
    pub search_params: HashMap<(String, String), String>,
    /// (resource, code) -> the types a reference parameter may point at (`*`: any).
    pub reference_targets: HashMap<(String, String), Vec<String>>,
    /// By canonical URL.
    pub profiles: HashMap<String, Profile>,
    /// `Resource.element` of a required-bound `code` → the code systems of its value set.
    pub code_systems: HashMap<String, Vec<String>>,
}

impl Defs {
    /// The embedded definitions, read once.
    pub fn get() -> &'static Defs {
        static DEFS: OnceLock<Defs> = OnceLock::new();
        DEFS.get_or_init(Defs::load)
    }

    fn load() -> Defs {
        let mut types: HashMap<String, Vec<Element>> = HashMap::new();
        let mut current: Option<String> = None;
        for line in R4_ELEMENTS.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = Some(name.to_string());
                types.entry(name.to_string()).or_default();
                continue;
            }
            let (Some(ty_name), Some((name, spec))) = (&current, line.split_once(' ')) else {
                continue;
            };
            let required = spec.contains('!');
            let repeats = spec.contains('*');
            let ty = spec.trim_start_matches(['!', '*']).to_string();
            if let Some(list) = types.get_mut(ty_name) {
                list.push(Element {
                    name: name.to_string(),
                    ty,
                    required,
                    repeats,
                });
            }
        }
        let mut search_params = HashMap::new();
        let mut reference_targets = HashMap::new();
        for line in R4_SEARCH_PARAMS.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut cols = line.split('\t');
            if let (Some(resource), Some(code), Some(ty)) = (cols.next(), cols.next(), cols.next()) {
                let key = (resource.to_string(), code.to_string());
                if let Some(targets) = cols.next() {
                    reference_targets.insert(key.clone(), targets.split(',').map(String::from).collect());
                }
                search_params.insert(key, ty.to_string());
            }
        }
        let mut profiles = HashMap::new();
        for file in UKCORE.files() {
            if let Some(profile) = file.contents_utf8().and_then(read_structure_definition) {
                profiles.insert(profile.url.clone(), profile);
            }
        }
        let code_systems = R4_CODE_SYSTEMS
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                Some((words.next()?.to_string(), words.map(String::from).collect()))
            })
            .collect();
        Defs {
            types,
            search_params,
            reference_targets,
            profiles,
            code_systems,
        }
    }

    /// The code systems a `code` element's values implicitly belong to (`Patient.gender`:
    /// administrative-gender): a token search may name them.
    pub fn implicit_systems(&self, resource: &str, element: &str) -> &[String] {
        self.code_systems
            .get(&format!("{resource}.{element}"))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether R4 lets a reference parameter of `resource` point at `target`.
    pub fn may_reference(&self, resource: &str, code: &str, target: &str) -> bool {
        self.reference_targets
            .get(&(resource.to_string(), code.to_string()))
            .is_some_and(|targets| targets.iter().any(|t| t == target || t == "*"))
    }

    /// The elements of a complex type or backbone element; `None` for primitives and unknown types.
    pub fn elements(&self, ty: &str) -> Option<&[Element]> {
        self.types.get(ty).map(Vec::as_slice)
    }

    pub fn element(&self, ty: &str, name: &str) -> Option<&Element> {
        self.elements(ty)?.iter().find(|e| e.name == name)
    }

    /// The type of the element at a dotted JSON path (`name.family`, `context.encounter`) in `ty`.
    pub fn path_type(&self, ty: &str, path: &str) -> Result<String, String> {
        let mut ty = ty.to_string();
        for segment in path.split('.') {
            let element = self
                .element(&ty, segment)
                .ok_or_else(|| format!("'{segment}' is not an element of {}", display(&ty)))?;
            ty = element.ty.clone();
        }
        Ok(ty)
    }

    /// The UK Core profile of a resource type, by the mapping's canonical URL or by the UK Core naming rule.
    pub fn profile(&self, url: &str, resource: &str) -> Option<&Profile> {
        self.profiles
            .get(url)
            .or_else(|| self.profiles.get(&format!("{UKCORE_SD}UKCore-{resource}")))
    }
}

/// The type a JSON key gives a choice element (`valueQuantity` of `value[x]`: `Quantity`), if it is one.
pub fn choice_type<'k>(key: &'k str, stem: &str) -> Option<&'k str> {
    key.strip_prefix(stem)
        .filter(|rest| rest.starts_with(char::is_uppercase))
}

/// `Observation_Component` reads as `Observation.component`.
pub fn display(ty: &str) -> String {
    match ty.split_once('_') {
        Some((resource, rest)) => {
            let mut chars = rest.chars();
            let first = chars.next().map(|c| c.to_ascii_lowercase()).unwrap_or_default();
            format!("{resource}.{first}{}", chars.as_str())
        }
        None => ty.to_string(),
    }
}

fn read_structure_definition(text: &str) -> Option<Profile> {
    let tree = crate::backend::xml_tree::parse(text.as_bytes()).ok()?;
    let tree = crate::mapping::node::Node::Native(&tree).to_json();
    let sd = tree.get("StructureDefinition")?;
    let value =
        |node: &Tree, key: &str| -> Option<String> { node.get(key)?.get(0)?.get("value")?.as_str().map(String::from) };
    let url = value(sd, "url")?;
    let ty = value(sd, "type")?;
    let name = value(sd, "name").unwrap_or_default();
    let mut elements = Vec::new();
    let differential = sd.get("differential").and_then(|d| d.get(0));
    for element in differential
        .and_then(|d| d.get("element"))
        .and_then(Tree::as_array)
        .into_iter()
        .flatten()
    {
        let Some(id) = element.get("id").and_then(Tree::as_str) else {
            continue;
        };
        let id = id.strip_prefix(&format!("{ty}.")).unwrap_or(id);
        if id == ty {
            continue;
        }
        let mut types = Vec::new();
        let mut profiles = Vec::new();
        for t in element.get("type").and_then(Tree::as_array).into_iter().flatten() {
            types.extend(value(t, "code"));
            profiles.extend(value(t, "profile"));
        }
        elements.push(ProfileElement {
            id: id.to_string(),
            min: value(element, "min").and_then(|m| m.parse().ok()),
            max: value(element, "max"),
            must_support: value(element, "mustSupport").as_deref() == Some("true"),
            types,
            profiles,
        });
    }
    Some(Profile {
        url,
        name,
        ty,
        elements,
    })
}

/// A partial called where an element of a type is expected: its body is checked against that type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartialUse {
    pub partial: String,
    pub ty: String,
}

/// Checks a template (or a partial's body) against the type it produces.
pub struct TemplateCheck<'a> {
    pub defs: &'a Defs,
    pub file: &'a str,
    pub problems: &'a mut Problems,
    /// Partials called from the checked template, with the type expected where they are called.
    pub uses: Vec<PartialUse>,
}

impl TemplateCheck<'_> {
    /// A node that produces one value of type `ty` (or, at a list position, a list of them).
    pub fn value(&mut self, node: &Node, ty: &str, path: &str) {
        match &node.value {
            NodeValue::Map(_) => self.object(node, ty, path),
            NodeValue::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(item, ty, &index(path, i));
                }
            }
            NodeValue::Str(text) => self.leaf(text, ty),
            _ => {}
        }
    }

    fn leaf(&mut self, text: &str, ty: &str) {
        if let Some((name, _)) = super::expr::whole_expression(text).and_then(super::expr::partial_call) {
            self.uses.push(PartialUse {
                partial: name,
                ty: ty.to_string(),
            });
        }
    }

    fn object(&mut self, node: &Node, ty: &str, path: &str) {
        if ty == "Resource" {
            return;
        }
        let Some(elements) = self.defs.elements(ty) else {
            self.problems.add(
                self.file,
                node.pos,
                path,
                format!("{} is a primitive: it has no elements", display(ty)),
            );
            return;
        };
        if ty == "Extension" {
            self.extension(node, path);
        }
        for (key, pos, value) in node.entries() {
            if key == "$value" {
                // A looped item given by one value: of the type the item is.
                if let Some(text) = value.as_str() {
                    self.leaf(text, ty);
                }
                continue;
            }
            if key.starts_with('$') {
                continue;
            }
            let key_path = child(path, key);
            let Some(element) = elements.iter().find(|e| &e.name == key) else {
                let twin = key
                    .strip_prefix('_')
                    .is_some_and(|k| elements.iter().any(|e| e.name == k));
                if !twin {
                    let hint = elements
                        .iter()
                        .find(|e| e.name.starts_with(key.as_str()) && key.len() >= 3)
                        .or_else(|| elements.iter().find(|e| edit_distance(&e.name, key) <= 2))
                        .map(|e| format!(" (did you mean '{}'?)", e.name))
                        .unwrap_or_default();
                    self.problems.add(
                        self.file,
                        *pos,
                        &key_path,
                        format!("'{key}' is not an element of {}{hint}", display(ty)),
                    );
                }
                continue;
            };
            if matches!(value.value, NodeValue::Seq(_)) && !element.repeats {
                self.problems.add(
                    self.file,
                    value.pos,
                    &key_path,
                    format!("'{key}' has at most one value in {}: not a list", display(ty)),
                );
            }
            self.value(value, &element.ty, &key_path);
        }
    }

    /// An extension with a UK Core URL must be one the profiles define, with a value type it allows.
    fn extension(&mut self, node: &Node, path: &str) {
        let Some(url_node) = node.get("url") else { return };
        let Some(url) = url_node.as_str().filter(|u| u.starts_with(UKCORE_SD)) else {
            return;
        };
        let Some(extension) = self.defs.profiles.get(url) else {
            self.problems.add(
                self.file,
                url_node.pos,
                &child(path, "url"),
                format!("unknown UK Core extension '{url}' (not in profiles/ukcore)"),
            );
            return;
        };
        let allowed = extension.value_types();
        let label = url.rsplit('/').next().unwrap_or(url);
        for (key, pos, _) in node.entries() {
            let Some(suffix) = choice_type(key, "value") else {
                continue;
            };
            if allowed.is_empty() || allowed.iter().any(|t| t.eq_ignore_ascii_case(suffix)) {
                if allowed.is_empty() {
                    self.problems.add(
                        self.file,
                        *pos,
                        &child(path, key),
                        format!("{label} has no value of its own (it is made of sub-extensions)"),
                    );
                }
                continue;
            }
            self.problems.add(
                self.file,
                *pos,
                &child(path, key),
                format!("{label} takes value[x] of type {}, not {suffix}", allowed.join(" or ")),
            );
        }
    }
}

/// Checks a mapping file's template and search parameters; returns the partials it calls and where.
pub fn check_mapping(file: &str, root: &Node, resource: &str, problems: &mut Problems) -> Vec<PartialUse> {
    let defs = Defs::get();
    if defs.elements(resource).is_none() {
        if let Some(node) = root.get("resource") {
            problems.add(
                file,
                node.pos,
                "resource",
                format!("{resource} is not a resource type im1-fhir knows (profiles/r4-elements.txt)"),
            );
        }
        return Vec::new();
    }
    check_params(file, root, resource, problems);
    let mut check = TemplateCheck {
        defs,
        file,
        problems,
        uses: Vec::new(),
    };
    if let Some(template) = root.get("template") {
        check.value(template, resource, "template");
    }
    check.uses
}

/// Every declared search parameter must be an R4 one for the resource, of the same type, over paths that
/// are elements of the produced resource.
pub fn check_params(file: &str, root: &Node, resource: &str, problems: &mut Problems) {
    let defs = Defs::get();
    let Some(params) = root.get("search").and_then(|s| s.get("params")) else {
        return;
    };
    for (name, pos, spec) in params.entries() {
        let path = child("search.params", name);
        let defined = defs
            .search_params
            .get(&(resource.to_string(), name.clone()))
            .or_else(|| defs.search_params.get(&("Resource".to_string(), name.clone())));
        let declared = spec.get("type").and_then(Node::as_str).unwrap_or_default();
        match defined {
            None => {
                let hint = defs
                    .search_params
                    .keys()
                    .filter(|(r, _)| r == resource)
                    .map(|(_, code)| code)
                    .find(|code| edit_distance(code, name) <= 2)
                    .map(|code| format!(" (did you mean '{code}'?)"))
                    .unwrap_or_default();
                problems.add(
                    file,
                    *pos,
                    &path,
                    format!("search parameter '{name}' is not defined for {resource} in FHIR R4{hint}"),
                );
            }
            Some(ty) if !declared.is_empty() && ty != declared => {
                let at = spec.get("type").map_or(*pos, |n| n.pos);
                problems.add(
                    file,
                    at,
                    &child(&path, "type"),
                    format!("search parameter '{name}' of {resource} is a {ty} parameter in FHIR R4, not {declared}"),
                );
            }
            Some(_) => {}
        }
        if let Some(NodeValue::Seq(items)) = spec.get("paths").map(|n| &n.value) {
            for (i, item) in items.iter().enumerate() {
                if let Some(Err(message)) = item.as_str().map(|p| defs.path_type(resource, p)) {
                    problems.add(file, item.pos, &index(&child(&path, "paths"), i), message);
                }
            }
        }
    }
}

/// Checks partial bodies against the types their callers expect, following partials that call partials.
/// `partials` maps a partial's name to its file and its `template` node.
pub fn check_partials(uses: Vec<PartialUse>, partials: &HashMap<String, (String, Node)>, problems: &mut Problems) {
    let defs = Defs::get();
    let mut done = std::collections::HashSet::new();
    let mut queue = uses;
    while let Some(use_) = queue.pop() {
        if !done.insert(use_.clone()) {
            continue;
        }
        let Some((file, body)) = partials.get(&use_.partial) else {
            continue;
        };
        let mut check = TemplateCheck {
            defs,
            file,
            problems: &mut *problems,
            uses: Vec::new(),
        };
        let before = check.problems.list.len();
        check.value(body, &use_.ty, "template");
        // A partial used for several types reports a problem once per type: say which.
        for problem in &mut check.problems.list[before..] {
            problem.message = format!("{} (called for {})", problem.message, display(&use_.ty));
        }
        queue.extend(check.uses);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_load() {
        let defs = Defs::get();
        assert!(defs.element("AllergyIntolerance", "onsetDateTime").is_some());
        assert!(defs.element("Observation_Component", "code").unwrap().required);
        assert_eq!(defs.path_type("Patient", "name.family").unwrap(), "string");
        assert_eq!(
            defs.search_params
                .get(&("Condition".into(), "onset-date".into()))
                .map(String::as_str),
            Some("date")
        );
        assert!(defs.may_reference("Slot", "schedule", "Schedule"));
        assert!(!defs.may_reference("Slot", "schedule", "Condition"));
        assert!(defs.may_reference("Observation", "focus", "Condition"));
        let allergy = defs.profile("", "AllergyIntolerance").unwrap();
        let code = allergy.elements.iter().find(|e| e.id == "code").unwrap();
        assert!(code.must_support && code.min == Some(1));
        let end = &defs.profiles[&format!("{UKCORE_SD}Extension-UKCore-AllergyIntoleranceEnd")];
        assert!(end.value_types().is_empty(), "{end:?}");
        let procedure = &defs.profiles[&format!("{UKCORE_SD}Extension-UKCore-VaccinationProcedure")];
        assert_eq!(procedure.value_types(), ["CodeableConcept"]);
    }
}
