//! Print the record for a seed as JSON: `cargo run -p im1-sim --example dump_record -- [SEED] [PATIENTS] [YYYY-MM-DD]`.

use im1_sim::record::{generate, GenerateOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let patients = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50);
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let today = args
        .get(3)
        .and_then(|s| time::Date::parse(s, format).ok())
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
    let record = generate(&GenerateOptions { seed, patients, today });
    match serde_json::to_string_pretty(&record) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("cannot serialise: {e}"),
    }
}
