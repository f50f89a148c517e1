//! Registers the application's resources: every `src/resources/<name>.rs` becomes the module
//! `resources::<name>`, merged into the API router, its `EVENTS` into the webhook event types, and
//! every `tests/api/resources/<name>.rs` a
//! module of the API test binary. Adding a resource is adding files; no list to edit.

use std::{
    env, fs, io,
    path::{Path, PathBuf},
};

fn main() -> io::Result<()> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| io::Error::other("no manifest dir"))?);
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("no OUT_DIR"))?);

    let sources = modules(&manifest.join("src/resources"))?;
    let mut code = String::new();
    for (name, path) in &sources {
        code += &format!("#[path = {:?}]\npub mod {name};\n", path.display().to_string());
    }
    code += "\n/// Merges every resource's routes into `$router`.\nmacro_rules! merge_resources {\n    ($router:expr) => {\n        $router";
    for (name, _) in &sources {
        code += &format!("\n            .merge($crate::resources::{name}::routes())");
    }
    code += "\n    };\n}\npub(crate) use merge_resources;\n";
    code += "\n/// Every resource's event types (its `EVENTS`), which webhooks may subscribe to.\npub const EVENTS: &[&[&str]] = &[";
    for (name, _) in &sources {
        code += &format!("\n    {name}::EVENTS,");
    }
    code += "\n];\n";
    fs::write(out.join("resources.rs"), code)?;

    let tests = modules(&manifest.join("tests/api/resources"))?;
    let mut code = String::new();
    for (name, path) in &tests {
        code += &format!("#[path = {:?}]\nmod {name};\n", path.display().to_string());
    }
    fs::write(out.join("resource_tests.rs"), code)?;

    println!("cargo:rerun-if-changed=src/resources");
    println!("cargo:rerun-if-changed=tests/api/resources");
    Ok(())
}

/// The `<name>.rs` files of `dir` (not `mod.rs`), sorted, as (module name, absolute path).
fn modules(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        let is_module = path.extension().is_some_and(|e| e == "rs")
            && name != "mod"
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if is_module {
            found.push((name.to_owned(), path.clone()));
        }
    }
    found.sort();
    Ok(found)
}
