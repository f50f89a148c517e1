//! SQLite and PostgreSQL migrations describe one schema: the same tables, columns (and their
//! nullability), primary keys, unique constraints, foreign keys, CHECK-constrained columns and
//! indexes. Types differ by design (uuid is BLOB, timestamptz is TEXT) and are not compared; so
//! are defaults, which the application always supplies on SQLite.
//!
//! Runs the real migrations of both backends: SQLite in a temporary file, PostgreSQL in a
//! database of its own on `PALISADE_TEST_DATABASE_URL` (required in CI).

#![allow(clippy::unwrap_used, reason = "in tests a panic is a failed assertion with its location")]

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Connection, PgConnection, PgPool, Row, SqlitePool, sqlite::SqliteConnectOptions};

/// One table's shape, in terms both backends can answer.
#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// Column name → nullable.
    columns: BTreeMap<String, bool>,
    primary_key: Vec<String>,
    unique: BTreeSet<Vec<String>>,
    /// (columns, referenced table, referenced columns).
    foreign_keys: BTreeSet<(Vec<String>, String, Vec<String>)>,
    /// Columns that a CHECK constraint reads.
    checked: BTreeSet<String>,
    /// Index name → columns, for indexes that back no constraint.
    indexes: BTreeMap<String, Vec<String>>,
}

type Schema = BTreeMap<String, Table>;

/// Table, kind (`p`, `u`, `f`, `c`), columns, referenced table, referenced columns.
type ConstraintRow = (String, String, Vec<String>, Option<String>, Vec<String>);

#[tokio::test]
async fn sqlite_and_postgres_migrations_give_the_same_tables_columns_constraints_and_indexes() {
    let Some(admin) = admin_url() else { return };
    let sqlite = sqlite_schema().await;
    let postgres = postgres_schema(&admin).await;
    assert!(sqlite.contains_key("todos") && sqlite.contains_key("tenants"), "the schema was not read: {sqlite:?}");
    let tables: BTreeSet<_> = sqlite.keys().chain(postgres.keys()).collect();
    let mut differences = Vec::new();
    for table in tables {
        match (sqlite.get(table), postgres.get(table)) {
            (Some(s), Some(p)) if s == p => {}
            (Some(s), Some(p)) => differences.push(format!("{table}:\n  sqlite:   {s:?}\n  postgres: {p:?}")),
            (s, _) => {
                differences.push(format!("{table} exists only in {}", if s.is_some() { "sqlite" } else { "postgres" }))
            }
        }
    }
    assert!(differences.is_empty(), "the migrations disagree:\n{}", differences.join("\n"));
}

#[tokio::test]
async fn every_postgres_table_with_a_tenant_id_is_isolated_by_the_one_policy() {
    let Some(admin) = admin_url() else { return };
    let (pool, drop_database) = migrated_postgres(&admin).await;
    let unprotected: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped \
         WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace \
           AND NOT (c.relrowsecurity AND c.relforcerowsecurity \
                    AND EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation'))",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let scoped: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_policy WHERE polname = 'tenant_isolation'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    drop_database.await;
    assert!(unprotected.is_empty(), "tenant tables without forced row-level security: {unprotected:?}");
    assert!(scoped >= 4, "expected the platform's tenant tables to be scoped, found {scoped} policies");
}

#[test]
fn check_columns_are_read_from_the_expression_without_its_string_literals() {
    let sql = "CREATE TABLE t (a TEXT NOT NULL CHECK (a IN ('b', 'c')), b TEXT, c TEXT CHECK (length(c) > 1))";
    let columns = ["a", "b", "c"].map(String::from).into_iter().collect();
    assert_eq!(sqlite_checked_columns(sql, &columns), ["a", "c"].map(String::from).into_iter().collect());
}

fn admin_url() -> Option<String> {
    match std::env::var("PALISADE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("PALISADE_TEST_DATABASE_URL must be set in CI"),
        _ => {
            eprintln!("SKIPPED: schema parity needs PALISADE_TEST_DATABASE_URL (a PostgreSQL admin URL)");
            None
        }
    }
}

async fn sqlite_schema() -> Schema {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteConnectOptions::new().filename(dir.path().join("parity.db")).create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate!("../../migrations/sqlite").run(&pool).await.unwrap();
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for (name, sql) in tables {
        let mut table = Table::default();
        let mut key: Vec<(i64, String)> = Vec::new();
        for row in sqlx::query("SELECT name, \"notnull\", pk FROM pragma_table_info(?)")
            .bind(&name)
            .fetch_all(&pool)
            .await
            .unwrap()
        {
            let column: String = row.get(0);
            table.columns.insert(column.clone(), row.get::<i64, _>(1) == 0);
            if row.get::<i64, _>(2) > 0 {
                key.push((row.get(2), column));
            }
        }
        key.sort();
        table.primary_key = key.into_iter().map(|(_, c)| c).collect();
        let indexes: Vec<(String, String)> =
            sqlx::query_as("SELECT name, origin FROM pragma_index_list(?)").bind(&name).fetch_all(&pool).await.unwrap();
        for (index, origin) in indexes {
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                .bind(&index)
                .fetch_all(&pool)
                .await
                .unwrap();
            match origin.as_str() {
                "u" => drop(table.unique.insert(columns)),
                "c" => drop(table.indexes.insert(index, columns)),
                _ => {} // "pk": the primary key, compared above
            }
        }
        let references: Vec<(i64, String, String, String)> =
            sqlx::query_as("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq")
                .bind(&name)
                .fetch_all(&pool)
                .await
                .unwrap();
        let mut by_id: BTreeMap<i64, (Vec<String>, String, Vec<String>)> = BTreeMap::new();
        for (id, target, from, to) in references {
            let entry = by_id.entry(id).or_insert_with(|| (Vec::new(), target, Vec::new()));
            entry.0.push(from);
            entry.2.push(to);
        }
        table.foreign_keys = by_id.into_values().collect();
        let columns = table.columns.keys().cloned().collect();
        table.checked = sqlite_checked_columns(&sql, &columns);
        schema.insert(name, table);
    }
    schema
}

/// SQLite keeps no catalog of CHECK constraints: the columns are read from the `CREATE TABLE`
/// text, as the identifiers inside each `CHECK (...)` once string literals are removed.
fn sqlite_checked_columns(sql: &str, columns: &BTreeSet<String>) -> BTreeSet<String> {
    let upper = sql.to_ascii_uppercase();
    let mut checked = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = upper[from..].find("CHECK") {
        let start = from + at + "CHECK".len();
        let (mut depth, mut end, mut in_string) = (0_i32, start, false);
        for (i, ch) in sql[start..].char_indices() {
            match ch {
                '\'' => in_string = !in_string,
                '(' if !in_string => depth += 1,
                ')' if !in_string => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let expression: String = sql[start..end].split('\'').step_by(2).collect::<Vec<_>>().join(" ");
        for word in expression.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if columns.contains(word) {
                checked.insert(word.to_owned());
            }
        }
        from = end.max(start);
    }
    checked
}

async fn postgres_schema(admin: &str) -> Schema {
    let (pool, drop_database) = migrated_postgres(admin).await;
    let schema = read_postgres_schema(&pool).await;
    pool.close().await;
    drop_database.await;
    schema
}

/// A database of the test's own with every PostgreSQL migration applied, and the future that
/// drops it.
async fn migrated_postgres(admin: &str) -> (PgPool, impl Future<Output = ()>) {
    let database = format!("palisade_parity_{}", uuid::Uuid::new_v4().simple());
    let mut admin_conn = PgConnection::connect(admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}"))).execute(&mut admin_conn).await.unwrap();
    let mut url = url::Url::parse(admin).unwrap();
    url.set_path(&database);
    let pool = PgPool::connect(url.as_str()).await.unwrap();
    sqlx::migrate!("../../migrations/postgres").run(&pool).await.unwrap();
    let drop_database = async move {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {database} WITH (FORCE)")))
            .execute(&mut admin_conn)
            .await
            .unwrap();
    };
    (pool, drop_database)
}

async fn read_postgres_schema(pool: &PgPool) -> Schema {
    let mut schema = Schema::new();
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, is_nullable::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name != '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, column, nullable) in columns {
        schema.entry(table).or_default().columns.insert(column, nullable == "YES");
    }
    // Constraints with their columns in key order; for foreign keys, the referenced ones too.
    let constraints: Vec<ConstraintRow> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.contype::text, \
                ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i) \
                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i), \
                c.confrelid::regclass::text, \
                ARRAY(SELECT a.attname::text FROM unnest(coalesce(c.confkey, '{}')) WITH ORDINALITY k(n, i) \
                      JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) \
         FROM pg_constraint c WHERE c.connamespace = 'public'::regnamespace AND c.conrelid != 0",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, kind, columns, target, target_columns) in constraints {
        let Some(entry) = schema.get_mut(&table) else { continue };
        match kind.as_str() {
            "p" => entry.primary_key = columns,
            "u" => drop(entry.unique.insert(columns)),
            "f" => drop(entry.foreign_keys.insert((columns, target.unwrap_or_default(), target_columns))),
            "c" => entry.checked.extend(columns),
            _ => {}
        }
    }
    let indexes: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "SELECT t.relname::text, i.relname::text, \
                ARRAY(SELECT a.attname::text FROM unnest(x.indkey) WITH ORDINALITY k(n, o) \
                      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
         WHERE t.relnamespace = 'public'::regnamespace \
           AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, index, columns) in indexes {
        if let Some(entry) = schema.get_mut(&table) {
            entry.indexes.insert(index, columns);
        }
    }
    schema
}
