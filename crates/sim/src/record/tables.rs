//! Fixed tables the generator draws from: synthetic names and places, and which vocabulary codes go together.
//!
//! Every clinical code here is a vocabulary code (a test checks each one); the tables only say which concepts
//! are plausible together (a hypertension problem with a blood pressure reading and amlodipine).

use super::model::EthnicCategory;

pub const FEMALE_GIVEN: &[&str] = &[
    "Sarah", "Emma", "Olivia", "Amelia", "Priya", "Aisha", "Chloe", "Hannah", "Grace", "Fatima", "Zara", "Megan",
    "Lucy", "Sophie", "Niamh", "Mei", "Ruth", "Joan", "Margaret", "Eleanor",
];
pub const MALE_GIVEN: &[&str] = &[
    "James", "Oliver", "Harry", "Mohammed", "Jack", "Thomas", "Daniel", "Arjun", "Kwame", "Liam", "George", "David",
    "Peter", "Samuel", "Owen", "Ravi", "Connor", "William", "Edward", "Tomasz",
];
pub const NEUTRAL_GIVEN: &[&str] = &["Alex", "Sam", "Jordan", "Robin", "Charlie", "Jude"];
pub const MIDDLE_NAMES: &[&str] = &["Anne", "Marie", "Louise", "John", "Michael", "Lee", "Rose", "Ali"];
pub const SURNAMES: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Khan", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke", "Ahmed",
    "Hughes", "Edwards", "Okafor", "Nowak", "Murphy", "Campbell", "Chen",
];

/// (town, county, postcode outward codes).
pub const TOWNS: &[(&str, Option<&str>, &[&str])] = &[
    ("Leeds", Some("West Yorkshire"), &["LS1", "LS6", "LS8"]),
    ("Manchester", Some("Greater Manchester"), &["M14", "M20"]),
    ("Birmingham", Some("West Midlands"), &["B15", "B29"]),
    ("Bristol", None, &["BS6", "BS7"]),
    ("Sheffield", Some("South Yorkshire"), &["S10", "S11"]),
    ("Nottingham", Some("Nottinghamshire"), &["NG7"]),
    ("Newcastle upon Tyne", Some("Tyne and Wear"), &["NE6"]),
    ("Liverpool", Some("Merseyside"), &["L17"]),
    ("York", Some("North Yorkshire"), &["YO10"]),
];
pub const STREETS: &[&str] = &[
    "Orchard Road",
    "Mill Street",
    "Church Lane",
    "Station Road",
    "Victoria Street",
    "Park Avenue",
    "Elm Grove",
    "Queens Road",
    "The Crescent",
    "Meadow Close",
    "Chapel Walk",
    "Beech Drive",
];
pub const HOUSE_NAMES: &[&str] = &[
    "Rose Cottage",
    "The Willows",
    "Flat 2, Ash Court",
    "Flat 5, Kings House",
];
pub const LOCALITIES: &[&str] = &["Headingley", "Didsbury", "Edgbaston", "Bishopston", "Heaton"];
/// Letters allowed in the inward part of a postcode.
pub const POSTCODE_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

const ETHNIC_SYSTEM: &str = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland";
/// Ethnic categories (UK Core `UKCore-EthnicCategoryEngland`), with a rough weight each.
pub const ETHNICITIES: &[(u32, EthnicCategory)] = &[
    (
        60,
        EthnicCategory {
            system: ETHNIC_SYSTEM,
            code: "A",
            display: "White - British",
        },
    ),
    (
        4,
        EthnicCategory {
            system: ETHNIC_SYSTEM,
            code: "B",
            display: "White - Irish",
        },
    ),
    (
        6,
        EthnicCategory {
            system: ETHNIC_SYSTEM,
            code: "C",
            display: "White - Any other White background",
        },
    ),
    (
        2,
        EthnicCategory {
            system: ETHNIC_SYSTEM,
            code: "F",
            display: "Mixed - White and Asian",
        },
    ),
    (
        5,
        EthnicCategory {
            system: ETHNIC_SYSTEM,
            code: "H",
            display: "Asian or Asian British - Indian",
        },
    ),
    (
        5,
        EthnicCategory {
            system: ETHNIC_SYSTEM,
            code: "J",
            display: "Asian or Asian British - Pakistani",
        },
    ),
    (
        4,
        EthnicCategory {
            system: ETHNIC_SYSTEM,
            code: "N",
            display: "Black or Black British - African",
        },
    ),
    (
        2,
        EthnicCategory {
            system: ETHNIC_SYSTEM,
            code: "M",
            display: "Black or Black British - Caribbean",
        },
    ),
    (
        2,
        EthnicCategory {
            system: ETHNIC_SYSTEM,
            code: "R",
            display: "Other Ethnic Groups - Chinese",
        },
    ),
    (
        5,
        EthnicCategory {
            system: ETHNIC_SYSTEM,
            code: "Z",
            display: "Not stated",
        },
    ),
];

/// A long-term condition and what goes with it.
pub struct ChronicProblem {
    pub code: &'static str,
    /// Minimum age at which the generator gives it.
    pub min_age: i32,
    /// Observations monitored for it.
    pub monitoring: &'static [&'static str],
    /// Repeat medications, one of which is prescribed.
    pub medications: &'static [&'static str],
    /// Recorded as confidential for some patients.
    pub sensitive: bool,
}

pub const BLOOD_PRESSURE: &str = "75367002";
pub const SYSTOLIC: &str = "72313002";
pub const DIASTOLIC: &str = "1091811000000102";
pub const BODY_WEIGHT: &str = "27113001";
pub const BODY_HEIGHT: &str = "50373000";
pub const BMI: &str = "60621009";
pub const HEART_RATE: &str = "364075005";
pub const TEMPERATURE: &str = "276885007";
pub const OXYGEN_SATURATION: &str = "431314004";
pub const RESPIRATORY_RATE: &str = "86290005";
pub const ALCOHOL_INTAKE: &str = "160573003";
pub const HAEMOGLOBIN: &str = "1022431000000105";
pub const TYPE2_OPT_OUT: &str = "881561000000100";

pub const CHRONIC_PROBLEMS: &[ChronicProblem] = &[
    ChronicProblem {
        code: "59621000", // Essential hypertension
        min_age: 30,
        monitoring: &[BLOOD_PRESSURE],
        medications: &["319283006", "318902004", "318859000", "318956006", "317919004"],
        sensitive: false,
    },
    ChronicProblem {
        code: "44054006", // Diabetes mellitus type 2
        min_age: 30,
        monitoring: &["999791000000106", "1023491000000104", "997681000000108"],
        medications: &[
            "325278007",
            "386047000",
            "325242002",
            "424345005",
            "703680009",
            "25290511000001101",
        ],
        sensitive: false,
    },
    ChronicProblem {
        code: "195967001", // Asthma
        min_age: 5,
        monitoring: &[OXYGEN_SATURATION],
        medications: &["39113611000001102", "35908111000001105"],
        sensitive: false,
    },
    ChronicProblem {
        code: "13645005", // COPD
        min_age: 45,
        monitoring: &[OXYGEN_SATURATION],
        medications: &["39113611000001102"],
        sensitive: false,
    },
    ChronicProblem {
        code: "40930008", // Hypothyroidism
        min_age: 20,
        monitoring: &["1022791000000101"],
        medications: &["39698611000001106", "39697911000001101"],
        sensitive: false,
    },
    ChronicProblem {
        code: "433144002", // CKD stage 3
        min_age: 50,
        monitoring: &["1011481000000105", "1000731000000107", "1023491000000104"],
        medications: &[],
        sensitive: false,
    },
    ChronicProblem {
        code: "49436004", // Atrial fibrillation
        min_age: 50,
        monitoring: &[HEART_RATE],
        medications: &["703908001", "19842211000001107", "319733000"],
        sensitive: false,
    },
    ChronicProblem {
        code: "35489007", // Depressive disorder
        min_age: 16,
        monitoring: &[],
        medications: &["39704111000001102", "321987003", "321949006", "375193003"],
        sensitive: true,
    },
    ChronicProblem {
        code: "197480006", // Anxiety disorder
        min_age: 16,
        monitoring: &[],
        medications: &["39704111000001102"],
        sensitive: true,
    },
    ChronicProblem {
        code: "84114007", // Heart failure
        min_age: 55,
        monitoring: &["1000651000000109", "1000661000000107"],
        medications: &["317972000", "318590006"],
        sensitive: false,
    },
    ChronicProblem {
        code: "414545008", // Ischaemic heart disease
        min_age: 45,
        monitoring: &["1005671000000105"],
        medications: &["319773006", "319799004", "39733011000001106", "320000009"],
        sensitive: false,
    },
    ChronicProblem {
        code: "396275006", // Osteoarthritis
        min_age: 45,
        monitoring: &[],
        medications: &["322236009", "329807003", "322341003"],
        sensitive: false,
    },
    ChronicProblem {
        code: "37796009", // Migraine
        min_age: 14,
        monitoring: &[],
        medications: &["318353009"],
        sensitive: false,
    },
    ChronicProblem {
        code: "203082005", // Fibromyalgia
        min_age: 25,
        monitoring: &[],
        medications: &["321745007", "415167006", "323014008"],
        sensitive: false,
    },
    ChronicProblem {
        code: "84757009", // Epilepsy
        min_age: 5,
        monitoring: &[],
        medications: &[],
        sensitive: false,
    },
];

/// A short illness and its usual treatment.
pub struct AcuteProblem {
    pub code: &'static str,
    /// Acute medication; the alternative is used when the patient is allergic to penicillin.
    pub medication: Option<&'static str>,
    pub penicillin_free_alternative: Option<&'static str>,
    pub child: bool,
}

pub const ACUTE_PROBLEMS: &[AcuteProblem] = &[
    AcuteProblem {
        code: "90176007", // Tonsillitis
        medication: Some("41953811000001101"),
        penicillin_free_alternative: Some("41946511000001109"),
        child: true,
    },
    AcuteProblem {
        code: "3110003", // Acute otitis media
        medication: Some("39732311000001104"),
        penicillin_free_alternative: Some("41946511000001109"),
        child: true,
    },
    AcuteProblem {
        code: "15805002", // Acute sinusitis
        medication: Some("41948311000001104"),
        penicillin_free_alternative: None,
        child: false,
    },
    AcuteProblem {
        code: "50417007", // Lower respiratory tract infection
        medication: Some("39732411000001106"),
        penicillin_free_alternative: Some("41948311000001104"),
        child: false,
    },
    AcuteProblem {
        code: "128045006", // Cellulitis
        medication: Some("39692211000001107"),
        penicillin_free_alternative: Some("41946511000001109"),
        child: false,
    },
    AcuteProblem {
        code: "48277006", // Impetigo
        medication: Some("39692211000001107"),
        penicillin_free_alternative: Some("41946511000001109"),
        child: true,
    },
    AcuteProblem {
        code: "279039007", // Low back pain
        medication: Some("329653008"),
        penicillin_free_alternative: None,
        child: false,
    },
    AcuteProblem {
        code: "4740000",
        medication: None,
        penicillin_free_alternative: None,
        child: false,
    }, // Herpes zoster
    AcuteProblem {
        code: "405737000",
        medication: Some("322236009"),
        penicillin_free_alternative: None,
        child: true,
    }, // Pharyngitis
];

/// Allergy codes the generator gives patients, with an optional substance concept.
pub const ALLERGIES: &[(&str, Option<&str>)] = &[
    ("91936005", None),               // Allergy to penicillin
    ("91935009", None),               // Allergy to peanuts
    ("91934008", Some("227493005")),  // Allergy to nuts (cashew nuts)
    ("91930004", None),               // Allergy to eggs
    ("91939003", None),               // Allergy to sulfonamides
    ("91931000", None),               // Allergy to erythromycin
    ("293586001", None),              // Aspirin allergy
    ("293597001", None),              // Codeine allergy
    ("293613006", None),              // Diclofenac allergy
    ("294971007", None),              // Simvastatin allergy
    ("294505008", Some("372687004")), // Amoxicillin allergy (amoxicillin)
    ("232349006", None),              // House dust allergy
    ("609537003", None),              // ACE inhibitor pseudoallergy
];
pub const PENICILLIN_ALLERGY: &str = "91936005";
pub const NO_KNOWN_DRUG_ALLERGY: &str = "409137002";
pub const NO_KNOWN_ALLERGY: &str = "716186003";
pub const MANIFESTATIONS: &[&str] = &[
    "247472004",
    "39579001",
    "64305001",
    "56018004",
    "422587007",
    "422400008",
    "241929008",
    "40178009",
    "23924001",
];

/// Laboratory tests with the value range the generator draws from (low, high, decimals).
pub const LAB_TESTS: &[(&str, f64, f64, u8)] = &[
    ("1005671000000105", 3.5, 7.5, 1),     // Serum cholesterol
    ("1005681000000107", 0.8, 2.2, 1),     // HDL
    ("1022191000000100", 1.5, 4.5, 1),     // LDL
    ("1005691000000109", 0.6, 3.0, 1),     // Triglycerides
    ("999791000000106", 34.0, 75.0, 0),    // HbA1c
    ("1011481000000105", 35.0, 110.0, 0),  // eGFR (CKD-EPI)
    ("1000731000000107", 55.0, 160.0, 0),  // Creatinine
    ("1000651000000109", 3.3, 5.6, 1),     // Potassium
    ("1000661000000107", 131.0, 147.0, 0), // Sodium
    (HAEMOGLOBIN, 105.0, 175.0, 0),        // Haemoglobin
    ("1022791000000101", 0.2, 6.0, 2),     // TSH
    ("1000821000000103", 32.0, 50.0, 0),   // Albumin
    ("997681000000108", 3.8, 8.0, 1),      // Fasting glucose
    ("1023491000000104", 0.5, 8.0, 1),     // Urine ACR
];
/// Blood tests taken together as one panel.
pub const LIPID_PANEL: &[&str] = &[
    "1005671000000105",
    "1005681000000107",
    "1022191000000100",
    "1005691000000109",
];
pub const RENAL_PANEL: &[&str] = &[
    "1000731000000107",
    "1011481000000105",
    "1000651000000109",
    "1000661000000107",
];

/// Smoking status codes.
pub const SMOKING: &[&str] = &["77176002", "65568007", "8517006", "160617001", "266919005", "230058003"];

/// Encounter types, weighted (code, weight, delivered how, location).
pub const ENCOUNTERS: &[(&str, u32, &str)] = &[
    ("185202000", 10, "Main surgery"),    // Seen in GP's surgery
    ("386472008", 6, "Telephone"),        // Telephone consultation
    ("185317003", 3, "Telephone"),        // Telephone encounter
    ("307321000000107", 2, "Video call"), // Video-link encounter
    ("270420001", 1, "Patient's home"),   // Seen in own home
];
pub const SEEN_IN_SURGERY: &str = "185202000";
pub const TELEPHONE_CONSULTATION: &str = "386472008";

/// Document types the generator files, with a title.
pub const DOCUMENTS: &[(&str, &str)] = &[
    ("823701000000103", "Discharge letter"),
    ("25611000000107", "Referral letter"),
    ("823691000000103", "Clinic letter"),
    ("4241000179101", "Laboratory report"),
    ("734163000", "Care plan"),
];

pub const SEASONAL_FLU: &str = "822851000000102";
pub const FLU_VACCINE: &str = "11278411000001109";
pub const PNEUMOCOCCAL: &str = "170337005";
pub const PNEUMOCOCCAL_VACCINE: &str = "10245211000001108";
pub const COVID_FIRST: &str = "1324681000000101";
pub const COVID_SECOND: &str = "1324691000000104";
pub const COVID_VACCINE: &str = "39115611000001103";
pub const SHINGLES: &str = "859641000000109";
pub const MMR_FIRST: &str = "308081000000105";
pub const PRESCHOOL_BOOSTER: &str = "870670004";
pub const INFANT_FIRST: &str = "1082441000000108";
pub const NOT_GIVEN_REASONS: &[&str] = &[
    "Patient declined",
    "Patient unwell on the day",
    "Vaccine already given elsewhere",
];

/// Every clinical code the tables above name (for the vocabulary test).
#[cfg(test)]
pub fn all_codes() -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = Vec::new();
    for p in CHRONIC_PROBLEMS {
        codes.push(p.code);
        codes.extend(p.monitoring);
        codes.extend(p.medications);
    }
    for p in ACUTE_PROBLEMS {
        codes.push(p.code);
        codes.extend(p.medication);
        codes.extend(p.penicillin_free_alternative);
    }
    for (a, s) in ALLERGIES {
        codes.push(a);
        codes.extend(s);
    }
    codes.extend(MANIFESTATIONS);
    codes.extend(LAB_TESTS.iter().map(|t| t.0));
    codes.extend(SMOKING);
    codes.extend(ENCOUNTERS.iter().map(|e| e.0));
    codes.extend(DOCUMENTS.iter().map(|d| d.0));
    codes.extend([
        BLOOD_PRESSURE,
        SYSTOLIC,
        DIASTOLIC,
        BODY_WEIGHT,
        BODY_HEIGHT,
        BMI,
        HEART_RATE,
        TEMPERATURE,
        OXYGEN_SATURATION,
        RESPIRATORY_RATE,
        ALCOHOL_INTAKE,
        TYPE2_OPT_OUT,
        NO_KNOWN_ALLERGY,
        NO_KNOWN_DRUG_ALLERGY,
        SEASONAL_FLU,
        FLU_VACCINE,
        PNEUMOCOCCAL,
        PNEUMOCOCCAL_VACCINE,
        COVID_FIRST,
        COVID_SECOND,
        COVID_VACCINE,
        SHINGLES,
        MMR_FIRST,
        PRESCHOOL_BOOSTER,
        INFANT_FIRST,
        super::TYPE1_OPT_OUT_CODE,
    ]);
    codes
}

#[cfg(test)]
mod tests {
    use super::super::vocab::Vocabulary;

    #[test]
    fn every_table_code_is_in_the_vocabulary() {
        let vocab = Vocabulary::get();
        for code in super::all_codes() {
            assert!(vocab.entry(code).is_some(), "code {code} is not in vocabulary.json");
        }
    }
}
