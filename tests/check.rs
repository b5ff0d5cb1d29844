//! `im1-fhir check` reports every problem at once as `file:line:col: key.path: message` and exits non-zero;
//! the shipped mappings are clean (issues 3 and 5).
use std::process::Command;

/// Runs the binary: its exit code, what it wrote and what it said on stderr.
fn run(command: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_im1-fhir"))
        .arg(command)
        .args(args)
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).to_string();
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

fn check(args: &[&str]) -> (i32, String) {
    let (code, out, _) = run("check", args);
    (code, out)
}

#[test]
fn the_shipped_mappings_are_clean() {
    let (code, out) = check(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": ok"), "{out}");
}

#[test]
fn broken_mappings_are_all_reported_with_their_places() {
    let dir = std::env::temp_dir().join(format!("im1-check-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("emis")).unwrap();
    std::fs::write(
        dir.join("emis/Patient.yaml"),
        r#"resource: Patient
profile: https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient
compartmnt: self
read:
  transaction:
    request: { method: GET, path: "patients/{{ id.item }}" }
    select: "{{ reply }}"
    join: { text: [data] }
id: "{{ r.PatientGuid }}"
template:
  resourceType: Patient
  gender: "{{ translate('no-such-map', r.Sex) }}"
  address: ["{{ partial('EmisAdress', r.Address) }}"]
  birthDate: "{{ r.DateOfBirth | }}"
  name: [{ family: "{{ nobody.Surname }}" }]
  active: "{{ transalte('emis-sex', r.Sex) }}"
search:
  params:
    identifier: { type: token, paths: [identifier] }
    gender: { type: token, paths: [gender], documentation: [not, text] }
  transaction:
    request: { method: GET, path: patients }
    select: "{{ reply }}"
    takes: { identifier: nhs-numbr, gender: nhs-number }
    requires: [[identifier], [surname]]
  patient:
    request: { method: GET, path: demographics }
    select: "{{ reply }}"
    requires: { identifier: true }
    takes: { identifier: day }
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("emis/_EmisAddress.yaml"),
        "params: [a]\ntemplate:\n  city: \"{{ a.Town }}\"\n  line: [\"{{ partial('Nowhere', a.Street) }}\"]\n  \
         postalCode: \"{{ partial('Postcode', a.Postcode, a.Town) }}\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("emis/_Postcode.yaml"),
        "params: [code]\ntemplate: \"{{ code }}\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("emis/Broken.yaml"), "resource: [unclosed\n").unwrap();
    // A file that is not UTF-8 is one problem among the others, not the end of the check.
    std::fs::write(dir.join("emis/Latin1.yaml"), b"resource: Patient\n# caf\xe9\n").unwrap();
    std::fs::write(dir.join("emis/Slot.yml"), "resource: Slot\n").unwrap();
    let (code, out) = check(&["--mappings", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "emis/Patient.yaml:3:1: compartmnt: unknown key 'compartmnt' (did you mean 'compartment'?)",
        "emis/Patient.yaml:12:11: template.gender: unknown ConceptMap 'no-such-map'",
        // Each unknown partial where it is called, in a mapping or in a partial.
        "emis/Patient.yaml:13:13: template.address[0]: unknown partial 'EmisAdress' (did you mean 'EmisAddress'?)",
        "emis/_EmisAddress.yaml:4:10: template.line[0]: unknown partial 'Nowhere'",
        // Given more (or fewer) arguments than it takes.
        "emis/_EmisAddress.yaml:5:15: template.postalCode: partial 'Postcode' takes 1 argument(s) (code), not 2",
        "emis/Patient.yaml:14:14: template.birthDate: expression does not compile",
        "emis/Patient.yaml:15:20: template.name[0].family: unknown variable 'nobody'",
        "emis/Broken.yaml:",
        "emis/Latin1.yaml:1:1: (top): cannot read: stream did not contain valid UTF-8",
        // A mapping saved as .yml would silently serve nothing.
        "emis/Slot.yml:1:1: (top): mapping files end in .yaml: this one is not read",
        "emis/Patient.yaml:8:13: read.transaction.join.text: unknown join key 'text' (known: base64, count)",
        "emis/Patient.yaml:16:11: template.active: unknown function 'transalte' (did you mean 'translate'?)",
        "emis/Patient.yaml:24:26: search.transaction.takes.identifier: unknown kind of value (known: nhs-number, day)",
        "emis/Patient.yaml:24:12: search.transaction.takes: 'gender' is in no requires alternative, so the native call is never asked by it",
        // What a native search needs must be declared, and said as a list (of lists, for alternatives).
        "emis/Patient.yaml:25:15: search.transaction.requires: 'surname' is not a search parameter this file declares",
        "emis/Patient.yaml:29:15: search.patient.requires: a list of parameter names, or a list of such lists (alternatives)",
        "emis/Patient.yaml:30:12: search.patient.takes: 'identifier' is not a date parameter, as one whole date (YYYY-MM-DD) is",
        // What a parameter's documentation says is text, for the CapabilityStatement.
        "emis/Patient.yaml:20:60: search.params.gender.documentation: must be text, not a list",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // Each file named as it opens from where `check` ran: under the folder given.
    let opened = format!("{}/emis/Patient.yaml:3:1:", dir.display());
    assert!(out.contains(&opened), "missing {opened:?} in:\n{out}");
    std::fs::remove_dir_all(&dir).ok();
}

/// No mappings at all, or none for a supplier a configured practice runs, would make every request a 404:
/// `check` says so (and `serve` refuses to start).
#[test]
fn mappings_that_serve_nothing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(&["--mappings", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("mappings: no mapping files were found"), "{out}");
}

#[test]
fn config_problems_are_reported_with_lines() {
    let path = std::env::temp_dir().join(format!("im1-check-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[server]\nlisten = \"somewhere\"\n\n[security]\nid_key = { env = \"IM1_CHECK_TEST_UNSET\" }\n",
    )
    .unwrap();
    let (code, out) = check(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(":2:10: listen must be HOST:PORT"), "{out}");
    assert!(
        out.contains(":5:10: environment variable IM1_CHECK_TEST_UNSET is not set"),
        "{out}"
    );
    std::fs::remove_file(&path).ok();
}

#[test]
fn templates_and_search_parameters_are_checked_against_r4_and_uk_core() {
    let dir = std::env::temp_dir().join(format!("im1-check-profile-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("emis")).unwrap();
    std::fs::write(
        dir.join("emis/AllergyIntolerance.yaml"),
        r#"resource: AllergyIntolerance
profile: https://fhir.hl7.org.uk/StructureDefinition/UKCore-AllergyIntolerance
compartment: patient
search:
  params:
    patient: { type: reference, paths: [patient] }
    onset: { type: token, paths: [onsetDateTime] }
    onset-date: { type: date, paths: [onsetDate] }
  transaction:
    request: { method: GET, path: "patients/{{ patient.native }}/record" }
    select: "{{ reply.Allergies }}"
id: "{{ r.Guid }}"
template:
  resourceType: AllergyIntolerance
  onsetDate: "{{ r.Onset }}"
  code: [{ text: "{{ r.Term }}" }]
  patient: { reference: "{{ r.Patient }}", display: "{{ r.Name }}" }
  clinicalStatus:
    coding:
      - system: http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical
        cod: active
  reaction:
    - $each: "{{ r.Reactions }}"
      $as: x
      severty: "{{ x.Severity }}"
      manifestation: ["{{ partial('Concept', x.Term) }}"]
  extension:
    - url: https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NoSuchThing
      valueString: "{{ r.X }}"
    - url: https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-Evidence
      valueString: "{{ r.Evidence }}"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("emis/_Concept.yaml"),
        "params: [t]\ntemplate:\n  txt: \"{{ t }}\"\n",
    )
    .unwrap();
    let (code, out) = check(&["--mappings", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "emis/AllergyIntolerance.yaml:7:20: search.params.onset.type: search parameter 'onset' of AllergyIntolerance \
         is a date parameter in FHIR R4, not token",
        "emis/AllergyIntolerance.yaml:8:5: search.params.onset-date: search parameter 'onset-date' is not defined for \
         AllergyIntolerance in FHIR R4",
        "emis/AllergyIntolerance.yaml:8:39: search.params.onset-date.paths[0]: 'onsetDate' is not an element of \
         AllergyIntolerance",
        "emis/AllergyIntolerance.yaml:15:3: template.onsetDate: 'onsetDate' is not an element of AllergyIntolerance \
         (did you mean 'onsetDateTime'?)",
        "emis/AllergyIntolerance.yaml:16:9: template.code: 'code' has at most one value in AllergyIntolerance: not a list",
        "emis/AllergyIntolerance.yaml:21:9: template.clinicalStatus.coding[0].cod: 'cod' is not an element of Coding \
         (did you mean 'code'?)",
        "emis/AllergyIntolerance.yaml:25:7: template.reaction[0].severty: 'severty' is not an element of \
         AllergyIntolerance.reaction (did you mean 'severity'?)",
        "emis/AllergyIntolerance.yaml:28:12: template.extension[0].url: unknown UK Core extension \
         'https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NoSuchThing' (not in profiles/ukcore)",
        "emis/AllergyIntolerance.yaml:31:7: template.extension[1].valueString: Extension-UKCore-Evidence takes \
         value[x] of type Reference, not String",
        "emis/_Concept.yaml:3:3: template.txt: 'txt' is not an element of CodeableConcept (did you mean 'text'?) \
         (called for CodeableConcept)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(!out.contains("template.patient"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `token` refuses what the demo server would refuse, saying why, rather than print a useless token.
#[test]
fn token_refuses_what_the_server_would() {
    let token = |args: &[&str]| {
        let (code, _, err) = run("token", args);
        (code, err)
    };
    for (args, said) in [
        (
            &["--practice", "Y90001", "--scope", "bogus scope"][..],
            "unknown scope 'bogus'",
        ),
        (
            &["--practice", "Y90001", "--role", "clinician", "--patient", "9000000009"][..],
            "--patient is for --role patient",
        ),
        (
            &["--practice", "Y90001", "--patient", "1234567890"][..],
            "valid NHS number",
        ),
    ] {
        let (code, err) = token(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
    }
    let (code, err) = token(&["--practice", "Y90001", "--patient", "9000000009"]);
    assert_eq!(code, 0, "{err}");
}

/// Copies a folder tree (the shipped mappings, to change one of them).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A mappings folder may bring ConceptMaps of its own (`ConceptMap/*.json`): checked with it, each problem at
/// its place, and usable by its templates without a rebuild.
#[test]
fn concept_maps_in_the_mappings_folder_are_checked_and_used() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&root.join("mappings"), dir.path());
    std::fs::create_dir(dir.path().join("ConceptMap")).unwrap();
    // A map only the folder has, named by a template.
    let sex = std::fs::read_to_string(root.join("conformance/ConceptMap/emis-sex.json")).unwrap();
    std::fs::write(
        dir.path().join("ConceptMap/local-sex.json"),
        sex.replace("\"id\": \"emis-sex\"", "\"id\": \"local-sex\"")
            .replace("ConceptMap/emis-sex\"", "ConceptMap/local-sex\""),
    )
    .unwrap();
    let patient = dir.path().join("emis/Patient.yaml");
    let text = std::fs::read_to_string(&patient).unwrap();
    std::fs::write(&patient, text.replace("translate('emis-sex'", "translate('local-sex'")).unwrap();
    let folder = dir.path().to_str().unwrap();
    let (code, out) = check(&["--mappings", folder]);
    assert_eq!(code, 0, "{out}");
    // One that is not JSON is said where it breaks, named as it opens.
    std::fs::write(dir.path().join("ConceptMap/broken.json"), "{\n  broken").unwrap();
    let (code, out) = check(&["--mappings", folder]);
    assert_eq!(code, 1, "{out}");
    let placed = format!("{folder}/ConceptMap/broken.json:2:3:");
    assert!(out.contains(&placed), "missing {placed:?} in:\n{out}");
}
