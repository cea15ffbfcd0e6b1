//! TLS to the database through rustls: the server is trusted only through the configured
//! CA; `require` encrypts without checking; the password never shows in an error.

#![allow(clippy::unwrap_used)]

use central_sync::connect::{self, ConnectError, ConnectOptions, Tls};
use test_support::{PgServer, TestCerts};

fn options(pg: &PgServer, tls: Tls) -> ConnectOptions {
    let mut o = ConnectOptions::new(format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        pg.port()
    ));
    o.tls = tls;
    o.password = Some("s3cret-Pa55word".into());
    o
}

async fn ssl_in_use(opts: &ConnectOptions) -> Result<bool, ConnectError> {
    let client = connect::connect(opts).await?;
    Ok(client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0))
}

#[tokio::test]
async fn the_server_is_trusted_only_through_the_configured_ca() {
    let certs_dir = tempfile::tempdir().unwrap();
    let good = TestCerts::new(certs_dir.path(), "good");
    let other = TestCerts::new(certs_dir.path(), "other");
    let pg = PgServer::new();
    pg.enable_tls(&good);

    let verified = Tls::VerifyFullWith {
        ca_file: good.ca.clone(),
    };
    assert!(ssl_in_use(&options(&pg, verified)).await.unwrap());
    assert!(ssl_in_use(&options(&pg, Tls::Require)).await.unwrap());
    assert!(!ssl_in_use(&options(&pg, Tls::Disable)).await.unwrap());

    let wrong = options(
        &pg,
        Tls::VerifyFullWith {
            ca_file: other.ca.clone(),
        },
    );
    let err = ssl_in_use(&wrong).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!format!("{wrong:?}").contains("s3cret"));

    let missing = options(
        &pg,
        Tls::VerifyFullWith {
            ca_file: certs_dir.path().join("nope.pem"),
        },
    );
    let err = ssl_in_use(&missing).await.unwrap_err();
    assert!(matches!(err, ConnectError::CaFile { .. }), "{err}");

    let mut in_url = options(&pg, Tls::Disable);
    in_url.url = format!("postgres://postgres:pw@127.0.0.1:{}/postgres", pg.port());
    let err = ssl_in_use(&in_url).await.unwrap_err();
    assert!(matches!(err, ConnectError::PasswordInUrl), "{err}");
}
