//! `cargo xtask new-resource <name>`: generates a working tenant-scoped resource in four files,
//! the unit a palisade application grows by:
//!
//! - `crates/api/src/resources/<name>.rs`: scopes, routes, schemas and queries;
//! - `migrations/postgres/NNNN_<name>.sql` and `migrations/sqlite/NNNN_<name>.sql`;
//! - `crates/api/tests/api/resources/<name>.rs`: its tests on both backends.
//!
//! Nothing else is edited: the api crate's build script registers the module and the tests.
//! The templates are in `xtask/templates/`; `.ci/scaffold.sh` generates a resource from them
//! in CI, builds it and runs its tests, so they cannot rot.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

const USAGE: &str = "usage: cargo xtask new-resource <plural_name> [--singular <name>]\n\
    e.g. cargo xtask new-resource notes   (a lowercase snake_case plural; the singular drops a trailing s)";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match run(&args) {
        Ok(created) => {
            let list: Vec<String> = created.iter().map(|p| format!("  {}", p.display())).collect();
            eprintln!(
                "created:\n{}\nnext:\n  cargo test -p palisade-api --test api -- resources::\n  \
                 UPDATE_SNAPSHOTS=1 cargo test -p palisade-api --test api -- contract::the_served_document   \
                 (records the new operations in docs/openapi.json)\n  \
                 npx openapi-typescript docs/openapi.json -o clients/typescript/api.d.ts",
                list.join("\n")
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<Vec<PathBuf>, String> {
    let (command, rest) = args.split_first().ok_or("no command")?;
    if command != "new-resource" {
        return Err(format!("unknown command {command:?}"));
    }
    let names = Names::parse(rest)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace root")?.to_path_buf();
    let version = next_migration(&root)?;
    let files = [
        (include_str!("../templates/resource.rs"), format!("crates/api/src/resources/{}.rs", names.plural)),
        (include_str!("../templates/postgres.sql"), format!("migrations/postgres/{version:04}_{}.sql", names.plural)),
        (include_str!("../templates/sqlite.sql"), format!("migrations/sqlite/{version:04}_{}.sql", names.plural)),
        (include_str!("../templates/test.rs"), format!("crates/api/tests/api/resources/{}.rs", names.plural)),
    ];
    for (_, path) in &files {
        if root.join(path).exists() {
            return Err(format!("{path} exists already"));
        }
    }
    let mut created = Vec::new();
    for (template, path) in files {
        let target = root.join(&path);
        fs::write(&target, names.fill(template)).map_err(|e| format!("writing {path}: {e}"))?;
        created.push(target);
    }
    format(&root, &created)?;
    Ok(created.into_iter().filter_map(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf)).collect())
}

/// Formats the generated Rust with the project's rustfmt.toml, since names change line lengths.
fn format(root: &Path, files: &[PathBuf]) -> Result<(), String> {
    let rust: Vec<&PathBuf> = files.iter().filter(|p| p.extension().is_some_and(|e| e == "rs")).collect();
    let status = Command::new("rustfmt")
        .arg("--edition=2024")
        .arg("--config-path")
        .arg(root.join("rustfmt.toml"))
        .args(rust)
        .status()
        .map_err(|e| format!("running rustfmt: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("rustfmt failed: {status}")) }
}

/// The spellings a template needs, from the plural snake_case name.
#[derive(Debug, PartialEq, Eq)]
struct Names {
    plural: String,
    singular: String,
}

impl Names {
    fn parse(args: &[String]) -> Result<Self, String> {
        let (plural, singular) = match args {
            [plural] => {
                let singular = plural
                    .strip_suffix('s')
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("{plural:?} does not end in s: give its singular with --singular"))?;
                (plural.clone(), singular.to_owned())
            }
            [plural, flag, singular] if flag == "--singular" => (plural.clone(), singular.clone()),
            _ => return Err("expected one name".into()),
        };
        for name in [&plural, &singular] {
            let valid = name.len() <= 40
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !name.ends_with('_')
                && !name.contains("__");
            if !valid {
                return Err(format!("{name:?} is not a lowercase snake_case name (a-z, 0-9, _; at most 40)"));
            }
        }
        if plural == singular {
            return Err("the plural and the singular must differ".into());
        }
        if RESERVED.contains(&plural.as_str()) {
            return Err(format!("{plural:?} is taken by the platform"));
        }
        Ok(Self { plural, singular })
    }

    fn fill(&self, template: &str) -> String {
        template
            .replace("{{Plural}}", &camel(&self.plural))
            .replace("{{Singular}}", &camel(&self.singular))
            .replace("{{plural_words}}", &self.plural.replace('_', " "))
            .replace("{{singular_words}}", &self.singular.replace('_', " "))
            .replace("{{path}}", &self.plural.replace('_', "-"))
            .replace("{{plural}}", &self.plural)
            .replace("{{singular}}", &self.singular)
    }
}

/// Tables and paths the platform owns.
const RESERVED: &[&str] = &["tenants", "users", "audit_events", "idempotency_keys", "auth", "mod"];

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// One more than the highest migration version; both backends must agree on it.
fn next_migration(root: &Path) -> Result<u32, String> {
    let highest = |backend: &str| -> Result<u32, String> {
        let dir = root.join("migrations").join(backend);
        let entries = fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        Ok(entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.split('_').next()?.parse::<u32>().ok())
            .max()
            .unwrap_or(0))
    };
    let (postgres, sqlite) = (highest("postgres")?, highest("sqlite")?);
    if postgres != sqlite {
        return Err(format!("migrations/postgres ends at {postgres} but migrations/sqlite at {sqlite}"));
    }
    Ok(postgres + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_plural_name_gives_its_singular_type_and_path_spellings() {
        let names = Names::parse(&args(&["support_tickets"])).map_err(|e| e.to_string());
        let names = names.as_ref().map_err(String::as_str);
        assert_eq!(
            names.map(|n| n.fill("{{Plural}} {{Singular}} {{path}} {{singular}} {{plural_words}}")),
            Ok("SupportTickets SupportTicket support-tickets support_ticket support tickets".to_owned())
        );
    }

    #[test]
    fn names_that_would_not_compile_or_collide_are_refused() {
        for bad in [&["Notes"][..], &["9lives"], &["a-b"], &["notes_"], &["tenants"], &["data"], &[]] {
            assert!(Names::parse(&args(bad)).is_err(), "{bad:?} was accepted");
        }
        assert!(Names::parse(&args(&["data", "--singular", "datum"])).is_ok());
    }
}
