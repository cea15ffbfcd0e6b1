//! The roadside ingest daemon. Its pipeline is built in issue #3.

fn main() {
    eprintln!("ingest-daemon: the pipeline is not built yet (issue #3)");
    std::process::exit(2);
}
