//! Backup and recovery: runs deploy/backup/{backup,restore,verify}.sh against a real PostgreSQL.
//!
//! The scripts are what operators and the backup CronJob run, so they are tested as black boxes:
//! the same environment variables, the same files on disk. Every test that touches PostgreSQL
//! needs `PALISADE_TEST_DATABASE_URL` (an admin URL allowed to create databases) and the
//! PostgreSQL client tools (psql, pg_dump, pg_restore) on PATH; each creates its own databases
//! and backup directory and removes them afterwards, also when it fails.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Variables the scripts read; cleared so a developer's shell cannot change what a test does.
const SCRIPT_ENV: &[&str] = &[
    "PGDATABASE",
    "PGSERVICE",
    "PGOPTIONS",
    "PGHOSTADDR",
    "PGSSLMODE",
    "BACKUP_DIR",
    "BACKUP_ENCRYPTION",
    "BACKUP_KEY_FILE",
    "BACKUP_S3_URI",
    "BACKUP_KEEP_DAILY",
    "BACKUP_KEEP_WEEKLY",
    "BACKUP_KEEP_MONTHLY",
    "BACKUP_METRICS_FILE",
    "BACKUP_PUSHGATEWAY_URL",
    "BACKUP_NOW",
    "BACKUP_MAINTENANCE_DB",
    "PG_DUMP",
    "AWS_ENDPOINT_URL",
];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Databases in one cluster share roles; migrations create `palisade_app`, so they run one at a time.
static MIGRATIONS: Mutex<()> = Mutex::new(());

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(name: &str) -> PathBuf {
    repo_root().join("deploy/backup").join(name)
}

/// Connection settings for the scripts, as libpq environment variables.
#[derive(Clone)]
struct Pg {
    env: Vec<(String, String)>,
    admin_db: String,
}

/// Prints a notice that `cargo test` shows even for passing tests: libtest captures `eprintln!`
/// output of tests that pass, so a skipped suite would otherwise look exactly like a green one.
fn notice(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "\n!!! {message} !!!\n");
}

/// The admin connection, or `None` (with a loud notice, once) when PostgreSQL tests are not configured.
fn postgres() -> Option<Pg> {
    static SKIP_NOTICE: Once = Once::new();
    match std::env::var("PALISADE_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(Pg::from_url(url.trim())),
        _ if std::env::var_os("CI").is_some() => panic!(
            "PALISADE_TEST_DATABASE_URL is not set, but CI is: the PostgreSQL backup and restore \
             tests must run in CI. Set it to an admin URL, e.g. postgres://postgres@127.0.0.1:5432/postgres"
        ),
        _ => {
            SKIP_NOTICE.call_once(|| {
                notice(
                    "SKIPPED: the PostgreSQL backup/restore tests (crates/api/tests/api/backup.rs) need \
                     PALISADE_TEST_DATABASE_URL (an admin URL, e.g. postgres://postgres@127.0.0.1:5432/postgres) \
                     and psql, pg_dump and pg_restore on PATH. They did NOT run",
                )
            });
            None
        }
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Pg {
    /// Splits `postgres://user:password@host:port/db?sslmode=…` into libpq variables.
    fn from_url(url: &str) -> Self {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .unwrap_or_else(|| panic!("PALISADE_TEST_DATABASE_URL must be a postgres:// URL"));
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut env = Vec::new();
        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                env.push(("PGUSER".into(), percent_decode(user)));
            }
            if let Some(p) = password {
                env.push(("PGPASSWORD".into(), percent_decode(p)));
            }
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, p) = v6.split_once(']').unwrap_or((v6, ""));
            (h.to_string(), p.strip_prefix(':').unwrap_or("").to_string())
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.to_string()),
                None => (hostport.to_string(), String::new()),
            }
        };
        if !host.is_empty() {
            env.push(("PGHOST".into(), percent_decode(&host)));
        }
        if !port.is_empty() {
            env.push(("PGPORT".into(), port));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let var = match k {
                "sslmode" => "PGSSLMODE",
                "host" => "PGHOST",
                "port" => "PGPORT",
                "user" => "PGUSER",
                "password" => "PGPASSWORD",
                "sslrootcert" => "PGSSLROOTCERT",
                "connect_timeout" => "PGCONNECT_TIMEOUT",
                _ => continue,
            };
            env.push((var.into(), percent_decode(v)));
        }
        let admin_db = if db.is_empty() { "postgres".to_string() } else { percent_decode(db) };
        Self { env, admin_db }
    }

    /// A command with the connection variables set and every script knob cleared.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for var in SCRIPT_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.env("BACKUP_MAINTENANCE_DB", &self.admin_db);
        cmd
    }

    /// Runs SQL (on stdin, ON_ERROR_STOP) in `db` and returns unaligned output; panics on error.
    fn psql(&self, db: &str, sql: &str) -> String {
        let out =
            run_with_stdin(self.command("psql").args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db]), sql);
        assert_success(&out, &format!("psql on {db}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn database_exists(&self, name: &str) -> bool {
        self.psql(&self.admin_db, &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'")).trim() == "1"
    }

    fn create_database(&self, name: &str) {
        self.psql(&self.admin_db, &format!("CREATE DATABASE \"{name}\""));
    }

    fn drop_database(&self, name: &str) {
        self.psql(&self.admin_db, &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    }

    /// A new empty database, dropped when the guard goes out of scope.
    fn scratch_database(&self) -> Database {
        let name = unique("palisade_backup");
        self.create_database(&name);
        Database { pg: self.clone(), name }
    }

    /// A new database with the project's PostgreSQL migrations applied and two tenants' data.
    fn seeded_database(&self) -> Database {
        let db = self.scratch_database();
        apply_migrations(self, &db.name);
        self.psql(&db.name, SEED);
        db
    }
}

/// Drops its database on drop, so a failing test leaves nothing behind.
struct Database {
    pg: Pg,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = self
            .pg
            .command("psql")
            .args(["-X", "-q", "-d", &self.pg.admin_db, "-c"])
            .arg(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(unique("palisade-backup-test"));
        fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for child")
}

fn describe(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_success(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed\n{}", describe(out));
}

fn assert_failure(out: &Output, what: &str) {
    assert!(!out.status.success(), "{what} unexpectedly succeeded\n{}", describe(out));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Applies every migrations/postgres/*.sql file in lexical order, as the admin, like `palisade migrate`.
fn apply_migrations(pg: &Pg, db: &str) {
    let dir = repo_root().join("migrations/postgres");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migrations in {}", dir.display());
    let _serial = MIGRATIONS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for file in files {
        let text = fs::read_to_string(&file).expect("read migration");
        let mut cmd = pg.command("psql");
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db]);
        // sqlx runs each migration in a transaction unless it opts out.
        if !text.trim_start().starts_with("-- no-transaction") {
            cmd.arg("--single-transaction");
        }
        let out = run(cmd.arg("-f").arg(&file));
        assert_success(&out, &format!("migration {}", file.display()));
    }
}

const ACME: &str = "0190c6a0-0000-7000-8000-00000000000a";
const GLOBEX: &str = "0190c6a0-0000-7000-8000-00000000000b";

/// Two tenants with users, todos (awkward text included), audit events and idempotency keys.
const SEED: &str = r#"
INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES
    ('0190c6a0-0000-7000-8000-00000000000a', 'acme', 'Acme Corp', 'active', '2025-01-02T03:04:05.123456Z', '2025-01-02T03:04:05.123456Z'),
    ('0190c6a0-0000-7000-8000-00000000000b', 'globex', 'Globex ''International''', 'suspended', '2025-02-03T04:05:06Z', '2025-03-04T05:06:07Z');
INSERT INTO users (id, tenant_id, subject, role) VALUES
    ('0190c6a0-0000-7000-8000-0000000000a1', '0190c6a0-0000-7000-8000-00000000000a', 'alice@acme.test', 'admin'),
    ('0190c6a0-0000-7000-8000-0000000000a2', '0190c6a0-0000-7000-8000-00000000000a', 'bob@acme.test', 'member'),
    ('0190c6a0-0000-7000-8000-0000000000b1', '0190c6a0-0000-7000-8000-00000000000b', 'carol@globex.test', 'admin');
INSERT INTO todos (id, tenant_id, title, done, version, created_by)
SELECT gen_random_uuid(), '0190c6a0-0000-7000-8000-00000000000a', 'acme todo ' || g, g % 2 = 0, g, '0190c6a0-0000-7000-8000-0000000000a1'
FROM generate_series(1, 5) AS g;
INSERT INTO todos (id, tenant_id, title, done, created_by) VALUES
    (gen_random_uuid(), '0190c6a0-0000-7000-8000-00000000000b', E'tab\there, newline\nthere, backslash \\ and quote '' 🚀', true, '0190c6a0-0000-7000-8000-0000000000b1'),
    (gen_random_uuid(), '0190c6a0-0000-7000-8000-00000000000b', 'Ünïcödé and "double quotes"', false, '0190c6a0-0000-7000-8000-0000000000b1'),
    (gen_random_uuid(), '0190c6a0-0000-7000-8000-00000000000b', repeat('x', 500), false, '0190c6a0-0000-7000-8000-0000000000b1');
INSERT INTO audit_events (id, tenant_id, actor, action, resource_type, resource_id, request_id, client_ip)
SELECT gen_random_uuid(), tenant_id, 'user:' || created_by, 'todo.create', 'todo', id::text, 'req-' || left(id::text, 8), NULL
FROM todos;
INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, body, etag) VALUES
    ('0190c6a0-0000-7000-8000-00000000000a', 'key-1', 'hash-1', 201, '{"title":"acme todo 1"}', '"v1"'),
    ('0190c6a0-0000-7000-8000-00000000000b', 'key-1', 'hash-2', 409, '{}', NULL);
"#;

/// Everything that must survive a backup: every row of every table (as COPY text, in a total
/// order), ownership, grants, RLS flags and policies, and sequence positions.
fn fingerprint(pg: &Pg, db: &str) -> String {
    let tables = pg.psql(
        db,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname !~ '^pg_' ORDER BY 1",
    );
    let mut script = String::from("SET row_security = off;\n");
    for table in tables.lines() {
        script.push_str(&format!(
            "SELECT '== {table}';\nCOPY (SELECT * FROM {table} AS t ORDER BY t::text COLLATE \"C\") TO STDOUT;\n"
        ));
    }
    script.push_str(
        "SELECT '== relations';
         SELECT format('%I.%I', n.nspname, c.relname), c.relkind, pg_get_userbyid(c.relowner),
                c.relrowsecurity, c.relforcerowsecurity, c.relacl::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
         ORDER BY 1;
         SELECT '== policies';
         SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check
         FROM pg_policies ORDER BY 1, 2, 3;
         SELECT '== sequences';
         SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2;
         SELECT '== schema privileges';
         SELECT nspname, pg_get_userbyid(nspowner), nspacl::text FROM pg_namespace
         WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname !~ '^pg_' ORDER BY 1;",
    );
    pg.psql(db, &script)
}

fn count(pg: &Pg, db: &str, sql: &str) -> i64 {
    let out = pg.psql(db, sql);
    out.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected a number from {sql:?}, got {out:?}"))
}

/// Row-level security still isolates tenants for the app role after a restore.
fn assert_tenant_isolation(pg: &Pg, db: &str) {
    let visible = |tenant: Option<&str>| {
        let set = tenant.map(|t| format!("SELECT set_config('app.tenant_id', '{t}', true);")).unwrap_or_default();
        count(pg, db, &format!("BEGIN; SET LOCAL ROLE palisade_app; {set} SELECT count(*) FROM todos; ROLLBACK;"))
    };
    assert_eq!(visible(Some(ACME)), 5, "acme sees exactly its 5 todos through RLS");
    assert_eq!(visible(Some(GLOBEX)), 3, "globex sees exactly its 3 todos through RLS");
    assert_eq!(visible(None), 0, "without app.tenant_id the app role sees no todos");
}

/// Names of the regular files in `dir` (hidden ones included), sorted.
fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Backup files (not checksums) in `dir` for `db`.
fn dumps(dir: &Path, db: &str) -> Vec<String> {
    listing(dir).into_iter().filter(|n| n.starts_with(&format!("{db}_")) && !n.ends_with(".sha256")).collect()
}

/// `bash deploy/backup/<name>` connected as `pg`, with PGDATABASE=`db` and BACKUP_DIR=`dir`.
fn backup_script(pg: &Pg, name: &str, db: &str, dir: &Path) -> Command {
    let mut cmd = pg.command("bash");
    cmd.arg(script(name)).env("PGDATABASE", db).env("BACKUP_DIR", dir);
    cmd
}

fn backup(pg: &Pg, db: &str, dir: &Path) -> Command {
    backup_script(pg, "backup.sh", db, dir)
}

fn restore(pg: &Pg, db: &str, dir: &Path) -> Command {
    backup_script(pg, "restore.sh", db, dir)
}

fn verify(pg: &Pg, db: &str, dir: &Path) -> Command {
    backup_script(pg, "verify.sh", db, dir)
}

/// How many scratch databases of the restore drill for `db` exist (verify.sh names them
/// `<first 32 characters of db>_drill_<time>_<pid>`).
fn drill_databases(pg: &Pg, db: &str) -> i64 {
    count(
        pg,
        &pg.admin_db,
        &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{}\\_drill\\_%'", &db[..32.min(db.len())]),
    )
}

/// Takes one backup of `db` into `dir` and returns the path of the dump.
fn take_backup(pg: &Pg, db: &str, dir: &Path) -> PathBuf {
    let out = run(&mut backup(pg, db, dir));
    assert_success(&out, "backup.sh");
    let found = dumps(dir, db);
    assert_eq!(found.len(), 1, "exactly one dump expected in {}: {found:?}", dir.display());
    dir.join(&found[0])
}

/// A seeded database with one backup of it: the database, the directory of the backup, the dump.
fn backed_up_database(pg: &Pg) -> (Database, TempDir, PathBuf) {
    let db = pg.seeded_database();
    let dir = TempDir::new();
    let dump = take_backup(pg, &db.name, dir.path());
    (db, dir, dump)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A directory for the keys of the `tool` encryption test, or `None` (with a notice that the test
/// was skipped) when one of `programs` is not installed.
fn encryption_keys(tool: &str, programs: &[&str]) -> Option<TempDir> {
    if programs.iter().all(|program| have(program)) {
        return Some(TempDir::new());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{tool} is not installed, but CI is set: the {tool} encryption test must run in CI \
         (.ci/run's test and coverage groups install age and gnupg)"
    );
    notice(&format!("SKIPPED: {tool} is not installed; the {tool} encryption test did not run"));
    None
}

fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod script");
}

// ---------------------------------------------------------------------------------------------
// Calendar arithmetic for the independent retention model (proleptic Gregorian, UTC)
// ---------------------------------------------------------------------------------------------

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// ISO-8601 (year, week) of a day number: the week belongs to the year of its Thursday.
fn iso_week(days: i64) -> (i64, i64) {
    let weekday = (days + 3).rem_euclid(7) + 1; // 1970-01-01 was a Thursday; Monday = 1
    let thursday = days - weekday + 4;
    let (year, _, _) = civil_from_days(thursday);
    let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
    (year, week)
}

#[derive(Clone, Debug)]
struct Fake {
    days: i64,
    stamp: String,
    name: String,
}

fn fake(db: &str, days: i64, hour: u32, minute: u32, suffix: &str) -> Fake {
    let (y, m, d) = civil_from_days(days);
    let stamp = format!("{y:04}{m:02}{d:02}T{hour:02}{minute:02}00Z");
    Fake { days, name: format!("{db}_{stamp}.dump{suffix}"), stamp }
}

/// The documented policy, computed independently of the script: newest backup of each of the
/// `daily` newest days, `weekly` newest ISO weeks and `monthly` newest months that have backups,
/// plus the newest backup overall.
fn expected_kept(backups: &[Fake], daily: usize, weekly: usize, monthly: usize) -> BTreeSet<String> {
    let mut sorted: Vec<&Fake> = backups.iter().collect();
    sorted.sort_by(|a, b| b.stamp.cmp(&a.stamp).then(b.name.cmp(&a.name)));
    let mut kept = BTreeSet::new();
    let mut newest_per = |key: &dyn Fn(&Fake) -> (i64, i64, i64), limit: usize| {
        let mut seen = Vec::new();
        for b in &sorted {
            let k = key(b);
            if !seen.contains(&k) {
                seen.push(k);
                if seen.len() <= limit {
                    kept.insert(b.name.clone());
                }
            }
        }
    };
    newest_per(&|b| civil_from_days(b.days), daily);
    newest_per(
        &|b| {
            let (y, w) = iso_week(b.days);
            (y, w, 0)
        },
        weekly,
    );
    newest_per(
        &|b| {
            let (y, m, _) = civil_from_days(b.days);
            (y, m, 0)
        },
        monthly,
    );
    if let Some(newest) = sorted.first() {
        kept.insert(newest.name.clone());
    }
    kept
}

/// Compares two sets of file names and, when they differ, says which names differ.
fn assert_same_files(actual: &BTreeSet<String>, expected: &BTreeSet<String>, context: &str) {
    let extra: Vec<_> = actual.difference(expected).collect();
    let missing: Vec<_> = expected.difference(actual).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{context}\nkept but should have been pruned: {extra:?}\npruned but should have been kept: {missing:?}"
    );
}

/// Writes fake dumps with correct-looking checksum files.
fn write_fakes(dir: &Path, backups: &[Fake]) {
    for b in backups {
        fs::write(dir.join(&b.name), format!("fake dump {}\n", b.name)).expect("write fake dump");
        fs::write(dir.join(format!("{}.sha256", b.name)), format!("{}  {}\n", "0".repeat(64), b.name))
            .expect("write fake checksum");
    }
}

/// 400 days of history ending 2025-02-03: nightly backups, a second one every third day, a few
/// encrypted ones, and gaps (every eleventh day and a whole week) — across a year boundary where
/// ISO weeks and calendar years disagree (2024-12-30 is in 2025-W01).
fn synthetic_history(db: &str) -> Vec<Fake> {
    let last = days_from_civil(2025, 2, 3);
    let gap_week = days_from_civil(2024, 11, 4)..days_from_civil(2024, 11, 11);
    let mut history = Vec::new();
    for i in 0..400 {
        let day = last - i;
        if i % 11 == 5 || gap_week.contains(&day) {
            continue;
        }
        let suffix = if i % 17 == 0 { ".age" } else { "" };
        history.push(fake(db, day, 2, 17, suffix));
        if i % 3 == 0 {
            history.push(fake(db, day, 14, 5, ""));
        }
    }
    history
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn a_backup_restores_every_row_and_every_rls_policy_into_a_recreated_database() {
    let Some(pg) = postgres() else { return };
    let db = pg.seeded_database();
    let dir = TempDir::new();
    let metrics = dir.path().join("metrics/palisade-backup.prom");
    fs::create_dir_all(metrics.parent().expect("parent")).expect("metrics dir");
    let before = fingerprint(&pg, &db.name);
    assert!(before.contains("acme todo 5"), "seed data present:\n{before}");
    assert_tenant_isolation(&pg, &db.name);

    let out = run(backup(&pg, &db.name, dir.path()).env("BACKUP_METRICS_FILE", &metrics));
    assert_success(&out, "backup.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Summary:") && stdout.contains("Duration:"), "closing summary:\n{stdout}");

    // <db>_<YYYYmmddTHHMMSSZ>.dump with a sha256sum-format checksum beside it, nothing else.
    let found = dumps(dir.path(), &db.name);
    assert_eq!(found.len(), 1, "{found:?}");
    let name = &found[0];
    let stamp = name
        .strip_prefix(&format!("{}_", db.name))
        .and_then(|s| s.strip_suffix(".dump"))
        .unwrap_or_else(|| panic!("unexpected dump name {name}"));
    assert!(
        stamp.len() == 16
            && stamp.as_bytes()[8] == b'T'
            && stamp.ends_with('Z')
            && stamp.chars().filter(char::is_ascii_digit).count() == 14,
        "timestamp {stamp} is not YYYYmmddTHHMMSSZ"
    );
    let dump = fs::read(dir.path().join(name)).expect("read dump");
    assert!(dump.starts_with(b"PGDMP"), "a pg_dump custom-format archive");
    let checksum = fs::read_to_string(dir.path().join(format!("{name}.sha256"))).expect("checksum file");
    let check = run(Command::new("sha256sum").arg("-c").arg(format!("{name}.sha256")).current_dir(dir.path()));
    assert_success(&check, &format!("sha256sum -c on {checksum}"));
    let leftovers: Vec<_> =
        listing(dir.path()).into_iter().filter(|n| n.starts_with('.') && !n.ends_with(".lock")).collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");

    let text = fs::read_to_string(&metrics).expect("metrics textfile");
    let label = format!("{{database=\"{}\"}}", db.name);
    for metric in [
        "palisade_backup_last_success_timestamp_seconds",
        "palisade_backup_last_size_bytes",
        "palisade_backup_last_duration_seconds",
    ] {
        assert!(text.contains(&format!("# HELP {metric} ")), "HELP for {metric}:\n{text}");
        assert!(text.contains(&format!("# TYPE {metric} gauge")), "TYPE for {metric}:\n{text}");
        assert!(text.contains(&format!("{metric}{label} ")), "sample for {metric}:\n{text}");
    }
    assert!(
        text.contains(&format!("palisade_backup_last_size_bytes{label} {}\n", dump.len())),
        "size metric equals the file size:\n{text}"
    );

    // Lose the database, recreate it empty, restore the newest backup into it.
    pg.drop_database(&db.name);
    pg.create_database(&db.name);
    let out = run(&mut restore(&pg, &db.name, dir.path()));
    assert_success(&out, "restore.sh");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.lines().any(|l| l.contains("public.todos") && l.trim_end().ends_with(" 8")),
        "row count per table reported:\n{report}"
    );

    let after = fingerprint(&pg, &db.name);
    assert_eq!(before, after, "restored database differs from the original");
    assert_tenant_isolation(&pg, &db.name);
}

#[test]
fn an_age_encrypted_backup_is_unreadable_without_the_identity_and_restores_with_it() {
    let Some(pg) = postgres() else { return };
    let Some(keys) = encryption_keys("age", &["age", "age-keygen"]) else { return };
    let db = pg.seeded_database();
    let dir = TempDir::new();
    let identity = keys.path().join("identity.txt");
    let recipients = keys.path().join("recipients.txt");
    assert_success(&run(Command::new("age-keygen").arg("-o").arg(&identity)), "age-keygen");
    let public = run(Command::new("age-keygen").arg("-y").arg(&identity));
    assert_success(&public, "age-keygen -y");
    fs::write(&recipients, &public.stdout).expect("write recipients");
    let before = fingerprint(&pg, &db.name);

    let out =
        run(backup(&pg, &db.name, dir.path()).env("BACKUP_ENCRYPTION", "age").env("BACKUP_KEY_FILE", &recipients));
    assert_success(&out, "backup.sh with age");
    let found = dumps(dir.path(), &db.name);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with(".dump.age"), "encrypted name: {}", found[0]);
    let bytes = fs::read(dir.path().join(&found[0])).expect("read");
    assert!(!bytes.starts_with(b"PGDMP"), "the file on disk must not be a plaintext archive");

    let target = unique("palisade_backup_age");
    let guard = Database { pg: pg.clone(), name: target.clone() };
    let out = run(restore(&pg, &db.name, dir.path()).args(["--target", &target, "--create"]));
    assert_failure(&out, "restore.sh without the identity");
    assert!(!pg.database_exists(&target), "nothing created without a key");

    let out = run(restore(&pg, &db.name, dir.path())
        .args(["--target", &target, "--create"])
        .env("BACKUP_KEY_FILE", &identity));
    assert_success(&out, "restore.sh with the age identity");
    assert_eq!(before, fingerprint(&pg, &guard.name));
}

#[test]
fn a_gpg_encrypted_backup_restores_with_its_passphrase_file() {
    let Some(pg) = postgres() else { return };
    let Some(keys) = encryption_keys("gpg", &["gpg"]) else { return };
    let db = pg.seeded_database();
    let dir = TempDir::new();
    let passphrase = keys.path().join("passphrase");
    fs::write(&passphrase, "correct horse battery staple\n").expect("write passphrase");
    let before = fingerprint(&pg, &db.name);

    let out =
        run(backup(&pg, &db.name, dir.path()).env("BACKUP_ENCRYPTION", "gpg").env("BACKUP_KEY_FILE", &passphrase));
    assert_success(&out, "backup.sh with gpg");
    let found = dumps(dir.path(), &db.name);
    assert!(found.len() == 1 && found[0].ends_with(".dump.gpg"), "{found:?}");

    let target = pg.scratch_database();
    let out =
        run(restore(&pg, &db.name, dir.path()).args(["--target", &target.name]).env("BACKUP_KEY_FILE", &passphrase));
    assert_success(&out, "restore.sh with the gpg passphrase");
    assert_eq!(before, fingerprint(&pg, &target.name));
}

#[test]
fn the_restore_drill_passes_on_a_good_backup_and_drops_its_scratch_database() {
    let Some(pg) = postgres() else { return };
    let (db, dir, _) = backed_up_database(&pg);

    let out = run(&mut verify(&pg, &db.name, dir.path()));
    assert_success(&out, "verify.sh");
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASSED"), "{}", describe(&out));
    assert_eq!(drill_databases(&pg, &db.name), 0, "the drill dropped its scratch database");
}

#[test]
fn the_restore_drill_fails_when_the_backup_does_not_match_the_source() {
    let Some(pg) = postgres() else { return };
    let (db, dir, _) = backed_up_database(&pg);
    // The source moves on after the backup: a policy is dropped and a row deleted.
    pg.psql(
        &db.name,
        "DROP POLICY tenant_isolation ON audit_events; DELETE FROM users WHERE subject = 'bob@acme.test';",
    );

    let out = run(&mut verify(&pg, &db.name, dir.path()));
    assert_failure(&out, "verify.sh on a mismatching backup");
    let err = stderr(&out);
    assert!(err.contains("tenant_isolation") && err.contains("rows public.users"), "diff shown:\n{err}");
    assert_eq!(drill_databases(&pg, &db.name), 0, "the failed drill still dropped its scratch database");
}

#[test]
fn a_corrupted_dump_is_refused_by_its_checksum() {
    let Some(pg) = postgres() else { return };
    let (db, dir, dump) = backed_up_database(&pg);
    let mut bytes = fs::read(&dump).expect("read dump");
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xA5;
    }
    fs::write(&dump, &bytes).expect("corrupt dump");
    pg.psql(&db.name, "UPDATE todos SET title = 'changed after the backup' WHERE title = 'acme todo 1'");
    let before = fingerprint(&pg, &db.name);

    // Even with --force onto the live database, nothing happens.
    let out = run(restore(&pg, &db.name, dir.path()).arg("--force"));
    assert_failure(&out, "restore.sh of a corrupted dump");
    assert!(stderr(&out).contains("CHECKSUM MISMATCH"), "clear message:\n{}", describe(&out));
    assert_eq!(before, fingerprint(&pg, &db.name), "target untouched");

    // Nor is a new database created for it.
    let target = unique("palisade_backup_corrupt");
    let _guard = Database { pg: pg.clone(), name: target.clone() };
    let out = run(restore(&pg, &db.name, dir.path()).args(["--target", &target, "--create"]).arg(&dump));
    assert_failure(&out, "restore.sh of a corrupted dump into a new database");
    assert!(stderr(&out).contains("CHECKSUM MISMATCH"), "{}", describe(&out));
    assert!(!pg.database_exists(&target), "no database created for a corrupt dump");
}

#[test]
fn retention_keeps_exactly_the_newest_backup_of_each_recent_day_week_and_month() {
    let db = "palisade_retention";
    let history = synthetic_history(db);
    assert!(history.len() > 400, "a dense history: {}", history.len());
    let unrelated = [
        "palisade_retention_archive_20240101T000000Z.dump", // another database's backup
        "palisade_retention_20240101T000000Z.dump.bak",
        "notes.txt",
    ];

    for (daily, weekly, monthly) in [(7, 4, 12), (3, 2, 5), (0, 0, 1), (10, 0, 0)] {
        let dir = TempDir::new();
        write_fakes(dir.path(), &history);
        for name in unrelated {
            fs::write(dir.path().join(name), "keep me").expect("write unrelated file");
        }
        let mut cmd = Command::new("bash");
        for var in SCRIPT_ENV {
            cmd.env_remove(var);
        }
        cmd.arg(script("backup.sh")).arg("--prune-only").env("PGDATABASE", db).env("BACKUP_DIR", dir.path());
        if (daily, weekly, monthly) != (7, 4, 12) {
            // The defaults are exercised by leaving the knobs unset.
            cmd.env("BACKUP_KEEP_DAILY", daily.to_string())
                .env("BACKUP_KEEP_WEEKLY", weekly.to_string())
                .env("BACKUP_KEEP_MONTHLY", monthly.to_string());
        }
        let out = run(&mut cmd);
        assert_success(&out, "backup.sh --prune-only");

        let expected = expected_kept(&history, daily, weekly, monthly);
        let kept: BTreeSet<String> =
            dumps(dir.path(), db).into_iter().filter(|n| !unrelated.contains(&n.as_str())).collect();
        assert_same_files(
            &kept,
            &expected,
            &format!("retention daily={daily} weekly={weekly} monthly={monthly}\n{}", describe(&out)),
        );
        let files = listing(dir.path());
        for name in &expected {
            assert!(files.contains(&format!("{name}.sha256")), "checksum of kept {name} kept");
        }
        for b in &history {
            if !expected.contains(&b.name) {
                assert!(!files.contains(&format!("{}.sha256", b.name)), "checksum of pruned {} removed", b.name);
            }
        }
        for name in unrelated {
            assert!(files.contains(name), "{name} is not a backup of {db} and must be left alone");
        }
        if (daily, weekly, monthly) == (7, 4, 12) {
            assert!((12..=23).contains(&expected.len()), "7+4+12 minus overlaps: {expected:?}");
            // Running it again changes nothing.
            let again = run(&mut cmd);
            assert_success(&again, "second --prune-only");
            assert_eq!(files, listing(dir.path()), "pruning is idempotent");
        }
    }
}

#[test]
fn a_successful_backup_prunes_old_backups_by_the_retention_policy() {
    let Some(pg) = postgres() else { return };
    let db = pg.seeded_database();
    let dir = TempDir::new();
    let mut history: Vec<Fake> =
        synthetic_history(&db.name).into_iter().filter(|b| !b.name.ends_with(".age")).collect();
    write_fakes(dir.path(), &history);

    let now = days_from_civil(2025, 2, 4);
    let out = run(backup(&pg, &db.name, dir.path()).env("BACKUP_NOW", "20250204T021700Z"));
    assert_success(&out, "backup.sh");
    let new = fake(&db.name, now, 2, 17, "");
    let files = listing(dir.path());
    assert!(files.contains(&new.name), "new dump named after BACKUP_NOW: {files:?}");
    history.push(new);
    let kept: BTreeSet<String> = dumps(dir.path(), &db.name).into_iter().collect();
    assert_same_files(&kept, &expected_kept(&history, 7, 4, 12), &describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Pruned:") && stdout.contains("pruned "), "summary lists what was pruned:\n{stdout}");
}

#[test]
fn a_failing_pg_dump_leaves_no_backup_behind_and_prunes_nothing() {
    let Some(pg) = postgres() else { return };
    let db = pg.seeded_database();
    let dir = TempDir::new();
    let tools = TempDir::new();
    let metrics = tools.path().join("backup.prom");
    // Old enough that a successful run would prune most of them.
    let history = synthetic_history(&db.name);
    write_fakes(dir.path(), &history);
    let before = listing(dir.path());

    for (what, body) in [
        (
            "a pg_dump that writes half a file and exits 1",
            "#!/bin/sh\nfor a; do case $a in --file=*) printf 'PGDMP partial' > \"${a#--file=}\";; esac; done\n\
             echo 'pg_dump: error: connection lost (simulated)' >&2\nexit 1\n",
        ),
        (
            "a pg_dump that exits 0 but writes garbage",
            "#!/bin/sh\nfor a; do case $a in --file=*) printf 'not an archive' > \"${a#--file=}\";; esac; done\nexit 0\n",
        ),
    ] {
        let fake_dump = tools.path().join("pg_dump");
        write_executable(&fake_dump, body);
        let out = run(backup(&pg, &db.name, dir.path())
            .env("PG_DUMP", &fake_dump)
            .env("BACKUP_NOW", "20250204T021700Z")
            .env("BACKUP_METRICS_FILE", &metrics));
        assert_failure(&out, what);
        let err = stderr(&out);
        assert!(err.contains("ERROR") && err.contains("FAILED"), "{what}: clear message\n{err}");
        let after: BTreeSet<String> =
            listing(dir.path()).into_iter().filter(|n| n != &format!(".{}.lock", db.name)).collect();
        assert_eq!(before, after, "{what}: no new file (not even a temporary one) and nothing pruned");
        assert!(!metrics.exists(), "{what}: no success metrics written");
    }
}

#[test]
fn restore_refuses_a_non_empty_database_without_force() {
    let Some(pg) = postgres() else { return };
    let db = pg.seeded_database();
    let dir = TempDir::new();
    let at_backup = fingerprint(&pg, &db.name);
    take_backup(&pg, &db.name, dir.path());
    pg.psql(
        &db.name,
        &format!(
            "INSERT INTO todos (id, tenant_id, title, created_by) VALUES \
             (gen_random_uuid(), '{ACME}', 'written after the backup', '0190c6a0-0000-7000-8000-0000000000a1')"
        ),
    );
    let live = fingerprint(&pg, &db.name);

    let out = run(&mut restore(&pg, &db.name, dir.path()));
    assert_failure(&out, "restore.sh into a non-empty database");
    assert_eq!(out.status.code(), Some(3), "distinct exit status for a refusal\n{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("not empty") && err.contains("--force"), "clear message:\n{err}");
    assert_eq!(live, fingerprint(&pg, &db.name), "target untouched");

    let out = run(restore(&pg, &db.name, dir.path()).arg("--force"));
    assert_success(&out, "restore.sh --force");
    assert_eq!(at_backup, fingerprint(&pg, &db.name), "--force replaced the contents with the backup's");
    assert_tenant_isolation(&pg, &db.name);
}

#[test]
fn the_model_of_iso_weeks_used_by_the_retention_test_is_right() {
    let week = |y, m, d| iso_week(days_from_civil(y, m, d));
    assert_eq!(week(2024, 12, 29), (2024, 52));
    assert_eq!(week(2024, 12, 30), (2025, 1));
    assert_eq!(week(2021, 1, 3), (2020, 53));
    assert_eq!(week(2021, 1, 4), (2021, 1));
    assert_eq!(week(2026, 1, 1), (2026, 1));
    assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    assert_eq!(days_from_civil(1970, 1, 1), 0);
}
