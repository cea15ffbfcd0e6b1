//! The `central-sync` binary: migrate (twice), create-edge-role (password to a 0600 file,
//! only a SCRAM verifier stored, the password in no server log), rollup.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use test_support::PgServer;

fn central_sync(pg: &PgServer, db: &str, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_central-sync"))
        .args([
            "--database-url",
            &pg.connection_string(db),
            "--tls",
            "disable",
        ])
        .args(args)
        .env_remove("CENTRAL_SYNC_PASSWORD")
        .env_remove("CENTRAL_SYNC_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn migrate_create_an_edge_role_and_roll_up() {
    let pg = PgServer::shared();
    let db = pg.fresh_database(None);
    let first = central_sync(pg, &db, &["migrate"]);
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("applied migrations [1, 2, 3] (plain)"),
        "{first:?}"
    );
    let again = central_sync(pg, &db, &["migrate"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "schema up to date (plain)"
    );

    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("box.pw");
    let edge = format!("cli-{}", std::process::id());
    let made = central_sync(
        pg,
        &db,
        &[
            "create-edge-role",
            &edge,
            "--output",
            pw_file.to_str().unwrap(),
        ],
    );
    assert!(made.stdout.is_empty(), "the password goes to the file only");
    let password = std::fs::read_to_string(&pw_file).unwrap();
    let password = password.trim_end();
    assert_eq!(password.len(), 32);
    let mode = std::fs::metadata(&pw_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored = pg.psql(
        &db,
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = 'edge_{edge}'"),
    );
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");
    assert!(!pg.log_tail(10_000).contains(password));

    // Refuses to overwrite a file; without --output the password goes to stdout once.
    let refused = Command::new(env!("CARGO_BIN_EXE_central-sync"))
        .args([
            "--database-url",
            &pg.connection_string(&db),
            "--tls",
            "disable",
        ])
        .args([
            "create-edge-role",
            &edge,
            "--output",
            pw_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert_eq!(
        std::fs::read_to_string(&pw_file).unwrap().trim_end(),
        password
    );
    let printed = central_sync(pg, &db, &["create-edge-role", &edge]);
    let new_password = String::from_utf8_lossy(&printed.stdout).trim().to_owned();
    assert_eq!(new_password.len(), 32);
    assert_ne!(new_password, password);

    let bad = Command::new(env!("CARGO_BIN_EXE_central-sync"))
        .args([
            "--database-url",
            &pg.connection_string(&db),
            "--tls",
            "disable",
        ])
        .args(["create-edge-role", "Not_A_Slug"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid edge id"));

    let rolled = central_sync(pg, &db, &["rollup"]);
    assert!(
        String::from_utf8_lossy(&rolled.stdout).contains("nothing to roll up"),
        "{rolled:?}"
    );
}
