//! The roadside ingest daemon binary. Everything lives in the library ([`ingest_daemon::cli`]);
//! this only parses the command line and hands over the process environment, read here once.

use std::process::ExitCode;

use clap::Parser;
use ingest_daemon::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::main(cli, std::env::vars().collect())
}
