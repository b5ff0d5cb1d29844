//! Mapping files, ConceptMaps and profiles are embedded with `include_dir!`, which cargo does not track: rebuild
//! whenever anything under those folders changes, new files included.
fn main() {
    println!("cargo:rerun-if-changed=mappings");
    println!("cargo:rerun-if-changed=conformance");
    println!("cargo:rerun-if-changed=profiles");
}
