//! Writes Paddock's CRDs as YAML: to stdout, or to the file given as the only argument.
//! `cargo run -p paddock-crds --bin crdgen -- crds/generated/crds.yaml` regenerates the checked-in copy.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let yaml = paddock_crds::crds_yaml()?;
    match std::env::args().nth(1) {
        Some(path) => std::fs::write(path, yaml)?,
        None => print!("{yaml}"),
    }
    Ok(())
}
