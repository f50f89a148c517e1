//! `palisade`: see `palisade --help`.

use std::process::ExitCode;

/// mimalloc instead of glibc's allocator: a request allocates and frees a few dozen small
/// objects (headers, extensions, boxed futures), and glibc's `malloc`/`free` were about a fifth of
/// a `/health` (docs/performance.md, "Instructions per request").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    palisade_api::cli::main()
}
