//! `scripts/backup` and `scripts/restore` against a throwaway PostgreSQL: a seeded
//! database is dumped (by a role that must authenticate with a password, given as a file),
//! restored into a fresh database, and compared table by table (row counts and a checksum
//! of every row), view and sequence included. A restore into a non-empty database and of
//! a file that is no dump are refused.

#![allow(clippy::unwrap_used)] // a test panics on broken fixtures

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_support::PgServer;

const SEED: &str = r#"
CREATE TABLE edge (
    edge_id text PRIMARY KEY,
    site_id text NOT NULL,
    registered_at timestamptz NOT NULL
);
CREATE TABLE traffic_sample (
    id bigserial PRIMARY KEY,
    edge_id text NOT NULL REFERENCES edge,
    detector_id text NOT NULL,
    lane int NOT NULL,
    bin_start timestamptz NOT NULL,
    volume int NOT NULL,
    speed_kmh double precision,
    flags int NOT NULL,
    extra jsonb
);
CREATE INDEX traffic_sample_edge_bin ON traffic_sample (edge_id, bin_start);
CREATE VIEW hourly AS
    SELECT edge_id, date_trunc('hour', bin_start) AS hour, sum(volume) AS volume
    FROM traffic_sample GROUP BY 1, 2;
INSERT INTO edge
    SELECT 'edge-' || i, 'SITE-' || i, '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 day'
    FROM generate_series(1, 20) i;
INSERT INTO traffic_sample (edge_id, detector_id, lane, bin_start, volume, speed_kmh, flags, extra)
    SELECT 'edge-' || (1 + i % 20), 'det-' || (i % 7), 1 + i % 3,
           '2026-11-26T00:00:00Z'::timestamptz + (i / 60) * interval '30 s',
           (i * 7919) % 40, CASE WHEN i % 11 = 0 THEN NULL ELSE 60 + (i * 31) % 70 + 0.25 END,
           i % 4, jsonb_build_object('quality', i % 5, 'note', 'lane ' || (i % 3))
    FROM generate_series(1, 20000) i;
"#;

/// A password with the characters a pgpass file must escape.
const PASSWORD: &str = r"b4ckup:p\w!";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// Runs a script with only libpq's connection variables pointing at `pg`.
fn run(pg: &PgServer, user: &str, name: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(script(name));
    cmd.args(args)
        .env("PGHOST", pg.host())
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", user)
        .env("PGCONNECT_TIMEOUT", "10");
    for var in [
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGPASSWORD_FILE",
        "PGSERVICE",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Row count and a checksum over every row of `relation`, in a stable order.
fn fingerprint(pg: &PgServer, db: &str, relation: &str) -> String {
    pg.psql(
        db,
        &format!(
            "SELECT count(*) || ' ' || coalesce(md5(string_agg(r::text, E'\\n' ORDER BY r::text)), '-') FROM {relation} r;"
        ),
    )
}

#[test]
fn a_backup_restores_into_a_fresh_database_with_the_same_rows() {
    let pg = PgServer::new();
    pg.create_database("central");
    pg.psql("central", SEED);
    // A reader that must authenticate: the password can only come from the file.
    pg.psql(
        "postgres",
        &format!(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE backup_reader LOGIN PASSWORD '{PASSWORD}';
             GRANT pg_read_all_data TO backup_reader;"
        ),
    );
    let hba = pg.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all backup_reader 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .unwrap();
    assert_eq!(pg.psql("postgres", "SELECT pg_reload_conf();"), "t");

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let password_file = dir.path().join("db-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();

    // Without the password: refused, and nothing left in the output directory.
    let denied = run(
        &pg,
        "backup_reader",
        "backup",
        &["-d", "central", "-o", out_dir],
    );
    assert!(!denied.status.success(), "{}", text(&denied.stderr));
    assert!(
        text(&denied.stderr).contains("nothing written"),
        "{}",
        text(&denied.stderr)
    );
    let dumps = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "db-password")
            .collect::<Vec<_>>()
    };
    assert_eq!(dumps(), Vec::<String>::new());

    // With the password file.
    let backup = run(
        &pg,
        "backup_reader",
        "backup",
        &[
            "-d",
            "central",
            "-o",
            out_dir,
            "--password-file",
            password_file.to_str().unwrap(),
        ],
    );
    let stderr = text(&backup.stderr);
    assert!(backup.status.success(), "{stderr}");
    assert!(!stderr.contains(PASSWORD) && !text(&backup.stdout).contains(PASSWORD));
    let path = text(&backup.stdout).trim().to_owned();
    let name = Path::new(&path).file_name().unwrap().to_str().unwrap();
    // central-YYYYmmddTHHMMSSZ.dump
    let stamp = name
        .strip_prefix("central-")
        .and_then(|s| s.strip_suffix(".dump"))
        .unwrap_or_else(|| panic!("file name {name}"));
    assert_eq!(stamp.len(), 16, "{name}");
    assert!(
        stamp.char_indices().all(|(i, c)| match i {
            8 => c == 'T',
            15 => c == 'Z',
            _ => c.is_ascii_digit(),
        }),
        "{name}"
    );
    assert_eq!(dumps(), vec![name.to_owned()]);
    assert_eq!(&std::fs::read(&path).unwrap()[..5], b"PGDMP");

    // Restore into a database that does not exist yet.
    let restore = run(
        &pg,
        "postgres",
        "restore",
        &["--create", "-d", "restored", &path],
    );
    assert!(restore.status.success(), "{}", text(&restore.stderr));

    for relation in ["edge", "traffic_sample", "hourly"] {
        let before = fingerprint(&pg, "central", relation);
        let after = fingerprint(&pg, "restored", relation);
        assert_eq!(before, after, "{relation}");
        println!("{relation}: {after}");
    }
    assert!(fingerprint(&pg, "restored", "traffic_sample").starts_with("20000 "));
    // The sequence continues where it was, so new rows do not collide.
    let seq = "SELECT last_value FROM traffic_sample_id_seq;";
    assert_eq!(pg.psql("central", seq), pg.psql("restored", seq));
    assert_eq!(pg.psql("restored", seq), "20000");
    // Constraints came along: a sample of an unknown box is refused.
    assert!(
        pg.try_psql(
            "restored",
            "INSERT INTO traffic_sample (edge_id, detector_id, lane, bin_start, volume, flags) \
             VALUES ('nobody', 'd', 1, now(), 1, 0);"
        )
        .is_err()
    );

    // A second restore into the now non-empty database is refused and changes nothing.
    let again = run(&pg, "postgres", "restore", &["-d", "restored", &path]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("database restored is not empty"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        fingerprint(&pg, "restored", "traffic_sample"),
        fingerprint(&pg, "central", "traffic_sample")
    );

    // A file that is not a dump.
    pg.create_database("empty");
    let bogus = run(
        &pg,
        "postgres",
        "restore",
        &["-d", "empty", password_file.to_str().unwrap()],
    );
    assert!(!bogus.status.success());
    let stderr = text(&bogus.stderr);
    assert!(
        stderr.contains("is not a pg_dump custom-format archive"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}
