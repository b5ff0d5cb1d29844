//! `im1-fhir check` reports every problem at once as `file:line:col: key.path: message` and exits non-zero;
//! the shipped mappings are clean (issues 3 and 5).
use std::process::Command;

fn check(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_im1-fhir"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
    )
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
id: "{{ r.PatientGuid }}"
template:
  resourceType: Patient
  gender: "{{ translate('no-such-map', r.Sex) }}"
  address: ["{{ partial('EmisAdress', r.Address) }}"]
  birthDate: "{{ r.DateOfBirth | }}"
  name: [{ family: "{{ nobody.Surname }}" }]
  active: "{{ transalte('emis-sex', r.Sex) }}"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("emis/_EmisAddress.yaml"),
        "params: [a]\ntemplate:\n  city: \"{{ a.Town }}\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("emis/Broken.yaml"), "resource: [unclosed\n").unwrap();
    let (code, out) = check(&["--mappings", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "emis/Patient.yaml:3:1: compartmnt: unknown key 'compartmnt' (did you mean 'compartment'?)",
        "emis/Patient.yaml:11:11: template.gender: unknown ConceptMap 'no-such-map'",
        "unknown partial 'EmisAdress' (did you mean 'EmisAddress'?)",
        "emis/Patient.yaml:13:14: template.birthDate: expression does not compile",
        "emis/Patient.yaml:14:20: template.name[0].family: unknown variable 'nobody'",
        "emis/Broken.yaml:",
        "emis/Patient.yaml:15:11: template.active: unknown function 'transalte' (did you mean 'translate'?)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    std::fs::remove_dir_all(&dir).ok();
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
