//! The API's integration tests, in one binary: each module runs the real server on port 0 (or the
//! real binary) and speaks HTTP to it, on SQLite and, with `PALISADE_TEST_DATABASE_URL` and
//! `PALISADE_TEST_REDIS_URL` set, on PostgreSQL + Redis. One binary links once, not once per file.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "in tests a panic is a failed assertion with its location")]

#[macro_use]
mod support;

#[cfg(unix)]
mod backup;
mod cli;
mod configuration_docs;
mod configuration_files;
mod contract;
mod data_rights;
mod edges;
mod foundation;
mod hardening;
mod jobs;
mod observability;
mod openapi_constraints;
mod outbox;
mod round_trips;
mod tenancy;

/// One test module per resource, `tests/api/resources/<name>.rs`, declared by the build script.
mod resources {
    include!(concat!(env!("OUT_DIR"), "/resource_tests.rs"));
}
