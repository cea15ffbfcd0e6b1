//! The connection pool, and connections for one-off commands.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Client;

use crate::config::{Config, DbTls};

/// The tokio-postgres settings the config describes (password read from its file).
pub fn pg_config(config: &Config) -> anyhow::Result<tokio_postgres::Config> {
    let d = &config.database;
    let mut pg = tokio_postgres::Config::new();
    pg.host(&d.host)
        .port(d.port)
        .user(&d.user)
        .dbname(&d.dbname)
        .application_name("central-api")
        .connect_timeout(Duration::from_secs(d.connect_timeout_s));
    if let Some(pw) = config.database_password()? {
        pg.password(pw.expose());
    }
    Ok(pg)
}

fn tls(config: &Config) -> anyhow::Result<Option<tokio_postgres_rustls::MakeRustlsConnect>> {
    if config.database.tls == DbTls::Disable {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &config.database.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("database.ca_file: cannot read {}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert
                    .with_context(|| format!("database.ca_file: bad PEM in {}", path.display()))?;
                roots
                    .add(cert)
                    .context("database.ca_file: unusable certificate")?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // One unusable system certificate must not stop the others.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(client)))
}

/// The pool the service uses. Connections are opened lazily.
pub fn pool(config: &Config) -> anyhow::Result<Pool> {
    let pg = pg_config(config)?;
    let mgr_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let mgr = match tls(config)? {
        Some(tls) => Manager::from_config(pg, tls, mgr_config),
        None => Manager::from_config(pg, tokio_postgres::NoTls, mgr_config),
    };
    let timeout = Some(Duration::from_secs(config.database.pool_timeout_s));
    Pool::builder(mgr)
        .max_size(config.database.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(timeout)
        .create_timeout(Some(Duration::from_secs(config.database.connect_timeout_s)))
        .recycle_timeout(timeout)
        .build()
        .context("building the database pool")
}

/// One connection, for `migrate` and `create-admin`. The connection task ends when the
/// client is dropped.
pub async fn connect(config: &Config) -> anyhow::Result<Client> {
    let pg = pg_config(config)?;
    let d = &config.database;
    let what = || {
        format!(
            "connecting to PostgreSQL at {}:{} as {}",
            d.host, d.port, d.user
        )
    };
    let client = match tls(config)? {
        Some(tls) => {
            let (client, conn) = pg.connect(tls).await.with_context(what)?;
            tokio::spawn(conn);
            client
        }
        None => {
            let (client, conn) = pg.connect(tokio_postgres::NoTls).await.with_context(what)?;
            tokio::spawn(conn);
            client
        }
    };
    Ok(client)
}

/// What the LISTEN connection hands on: `Listening` each time it has (re)subscribed, so
/// that anything sent while it was away can be caught up, then the notifications.
#[derive(Debug)]
pub enum Listened {
    Listening,
    Notification(tokio_postgres::Notification),
}

/// One dedicated connection that `LISTEN`s on `channels` and forwards what arrives to
/// `tx` until the connection fails (an error) or `tx` is closed (`Ok`). The caller
/// reconnects. `on_listening` runs once the subscription holds, before anything is
/// forwarded (in this task, so in order with the caller's handling of the return).
pub async fn listen(
    config: &Config,
    channels: &[&str],
    tx: &tokio::sync::mpsc::Sender<Listened>,
    on_listening: impl FnOnce(),
) -> anyhow::Result<()> {
    let pg = pg_config(config)?;
    match tls(config)? {
        Some(tls) => {
            let (client, conn) = pg.connect(tls).await.context("LISTEN connection")?;
            drive_listen(client, conn, channels, tx, on_listening).await
        }
        None => {
            let (client, conn) = pg
                .connect(tokio_postgres::NoTls)
                .await
                .context("LISTEN connection")?;
            drive_listen(client, conn, channels, tx, on_listening).await
        }
    }
}

async fn drive_listen<S, T>(
    client: Client,
    mut conn: tokio_postgres::Connection<S, T>,
    channels: &[&str],
    tx: &tokio::sync::mpsc::Sender<Listened>,
    on_listening: impl FnOnce(),
) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // Channel names are compile-time constants of this crate, never input.
    let sql: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
    let mut subscribe = std::pin::pin!(client.batch_execute(&sql));
    let mut on_listening = Some(on_listening);
    loop {
        tokio::select! {
            done = &mut subscribe, if on_listening.is_some() => {
                done.context("LISTEN")?;
                if let Some(f) = on_listening.take() {
                    f();
                }
                if tx.send(Listened::Listening).await.is_err() {
                    return Ok(());
                }
            }
            message = std::future::poll_fn(|cx| conn.poll_message(cx)) => match message {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if tx.send(Listened::Notification(n)).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("LISTEN connection")),
                None => anyhow::bail!("LISTEN connection closed"),
            }
        }
    }
}
