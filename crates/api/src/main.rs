//! `palisade`: see `palisade --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    palisade_api::cli::main()
}
