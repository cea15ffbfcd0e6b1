//! The throwaway PostgreSQL really works: queries, template clones, restart after a crash.

use test_support::PgServer;

#[test]
fn starts_and_answers_queries_on_its_own_port() {
    let pg = PgServer::shared();
    assert_ne!(pg.port(), 5432, "must never be the machine's own server");
    assert_eq!(pg.psql("postgres", "SELECT 1"), "1");
    assert_eq!(pg.psql("postgres", "SHOW fsync"), "off");
    assert_eq!(pg.psql("postgres", "SHOW server_encoding"), "UTF8");
    assert_eq!(pg.psql("postgres", "SHOW TimeZone"), "UTC");
    // Our own cluster: its data directory is in our temp dir.
    let data_dir = pg.psql("postgres", "SHOW data_directory");
    assert_eq!(std::path::Path::new(&data_dir), pg.data_dir());
    assert_eq!(
        pg.connection_string("x"),
        format!("postgresql://postgres@127.0.0.1:{}/x", pg.port())
    );
}

#[test]
fn template_clones_are_isolated_copies() {
    let pg = PgServer::shared();
    let setup = "CREATE TABLE detector (id text PRIMARY KEY, lanes int NOT NULL);\n\
                 INSERT INTO detector VALUES ('d1', 2);";
    let tmpl = pg.template_database("tmpl_isolation", setup);
    // Idempotent: the second call neither fails nor re-runs the setup.
    assert_eq!(pg.template_database("tmpl_isolation", setup), tmpl);

    let a = pg.fresh_database(Some(&tmpl));
    let b = pg.fresh_database(Some(&tmpl));
    assert_ne!(a, b);
    assert_eq!(
        pg.psql(&a, "SELECT id || ':' || lanes FROM detector"),
        "d1:2"
    );
    pg.psql(&a, "INSERT INTO detector VALUES ('d2', 4)");
    assert_eq!(pg.psql(&a, "SELECT count(*) FROM detector"), "2");
    assert_eq!(pg.psql(&b, "SELECT count(*) FROM detector"), "1");

    // The template itself cannot be connected to (nothing blocks cloning).
    assert!(pg.try_psql(&tmpl, "SELECT 1").is_err());

    // Without a template: an empty database.
    let empty = pg.fresh_database(None);
    assert_eq!(
        pg.psql(
            &empty,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'detector'"
        ),
        "0"
    );
}

#[test]
fn template_made_by_a_closure() {
    let pg = PgServer::shared();
    let mut calls = 0;
    for _ in 0..2 {
        pg.template_database_with("tmpl_closure", |server, db| {
            calls += 1;
            server.psql(db, "CREATE TABLE lane (n int)");
        });
    }
    assert_eq!(calls, 1);
    let db = pg.fresh_database(Some("tmpl_closure"));
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM lane"), "0");
}

#[test]
fn parallel_clones_from_one_template() {
    let pg = PgServer::shared();
    let tmpl = pg.template_database("tmpl_parallel", "CREATE TABLE t (x int);");
    let names: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let tmpl = &tmpl;
                s.spawn(move || {
                    let db = pg.fresh_database(Some(tmpl));
                    pg.psql(&db, &format!("INSERT INTO t VALUES ({i})"));
                    db
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for db in &names {
        assert_eq!(pg.psql(db, "SELECT count(*) FROM t"), "1");
    }
}

#[test]
fn error_reports_carry_the_server_message() {
    let pg = PgServer::shared();
    let err = pg
        .try_psql("postgres", "SELECT * FROM no_such_table")
        .unwrap_err();
    assert!(err.contains("no_such_table"), "{err}");
}

#[test]
fn immediate_stop_and_restart_keep_data_and_port() {
    // Its own server: the shared one must never go down under other tests.
    let pg = PgServer::new();
    let port = pg.port();
    pg.create_database("outage");
    pg.psql(
        "outage",
        "CREATE TABLE s (v int); INSERT INTO s VALUES (42);",
    );

    pg.stop_immediate();
    assert!(!pg.is_running());
    assert!(
        pg.try_psql("outage", "SELECT 1").is_err(),
        "server should be down"
    );

    pg.start();
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("outage", "SELECT v FROM s"), "42");
    assert!(
        pg.log_tail(200).contains("not properly shut down")
            || pg.log_tail(200).contains("automatic recovery")
    );

    // A clean stop and start works too, and start on a running server is a no-op.
    pg.stop();
    pg.start();
    pg.start();
    assert_eq!(pg.psql("outage", "SELECT v FROM s"), "42");

    let dir = pg.socket_dir().to_path_buf();
    drop(pg);
    if std::env::var_os("TEST_SUPPORT_LOG").is_none() {
        assert!(!dir.exists(), "temp dir should be removed on drop");
    }
}
