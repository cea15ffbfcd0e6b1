//! `detector-sim`: real detector frames with their ground truth, for tests and demos.
//! Usage and semantics: `ingest_daemon::detector_sim` (or `detector-sim --help`).

use std::process::ExitCode;

use clap::Parser;
use ingest_daemon::detector_sim::{Args, main_with};

fn main() -> ExitCode {
    let args = Args::parse();
    match main_with(&args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("detector-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
