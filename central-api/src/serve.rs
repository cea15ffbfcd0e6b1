//! Running the service: bind, tell systemd we are ready, serve (plain HTTP or TLS), and on
//! SIGTERM or SIGINT stop accepting, let open requests finish within
//! `server.shutdown_grace_s`, then exit. A second signal cuts the grace short.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::AppState;

/// `central-api serve`: checks the schema, binds `server.listen`, sends `READY=1` and
/// serves until a signal.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let state = AppState::new(config)?;
    check_schema(&state).await?;
    let listen = state.config.server.listen;
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("server.listen: cannot listen on {listen}"))?;
    let shutdown = CancellationToken::new();
    let force = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(shutdown.clone(), force.clone()));
    tracing::info!(%listen, tls = state.config.server.tls_cert_file.is_some(), "listening");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving"),
    ]);
    let result = run(state, listener, shutdown, force).await;
    signals.abort();
    result
}

/// Refuses to start on a database that `central-api migrate` has not brought up to date.
async fn check_schema(state: &AppState) -> anyhow::Result<()> {
    let db = state.pool.get().await.map_err(|e| {
        let d = &state.config.database;
        anyhow::anyhow!(
            "cannot connect to PostgreSQL at {}:{} (database {}, user {}): {e}",
            d.host,
            d.port,
            d.dbname,
            d.user
        )
    })?;
    let pending = crate::migrate::pending(&db)
        .await
        .context("checking the schema version")?;
    if !pending.is_empty() {
        anyhow::bail!(
            "the database schema is not up to date: {}; run `central-api migrate --config FILE` first",
            pending.join(", ")
        );
    }
    Ok(())
}

/// Serves `state` on an already bound `listener` until `shutdown` is cancelled, then drains
/// open requests for `server.shutdown_grace_s` (or until `force`). Tests call this with a
/// listener on port 0.
pub async fn run(
    state: AppState,
    listener: std::net::TcpListener,
    shutdown: CancellationToken,
    force: CancellationToken,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true).context("listener")?;
    let server_config = state.config.server.clone();
    let tls = match (&server_config.tls_cert_file, &server_config.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    let pool = state.pool.clone();
    let hub = state.hub.clone();
    crate::realtime::Hub::start(&state);
    let app = crate::http::app(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let grace = Duration::from_secs(server_config.shutdown_grace_s);
    let stopper = {
        let handle = handle.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            // Live sessions close their sockets, so the drain below is not held up.
            hub.shutdown.cancel();
            tracing::info!(
                grace_s = grace.as_secs(),
                "shutting down: draining open requests"
            );
            notify(&[sd_notify::NotifyState::Stopping]);
            handle.graceful_shutdown(Some(grace));
            force.cancelled().await;
            tracing::warn!("second signal: closing open connections now");
            handle.shutdown();
        })
    };
    let served = match tls {
        Some(tls) => {
            axum_server::from_tcp_rustls(listener, tls)
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            axum_server::from_tcp(listener)
                .handle(handle)
                .serve(app)
                .await
        }
    };
    stopper.abort();
    state_hub_drain(&hub).await;
    pool.close();
    served.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for the live-delivery tasks (stopped by then) for at most a few seconds.
async fn state_hub_drain(hub: &crate::realtime::Hub) {
    if tokio::time::timeout(Duration::from_secs(5), hub.drain())
        .await
        .is_err()
    {
        tracing::warn!("live-delivery tasks did not stop in time");
    }
}

fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<RustlsConfig> {
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).with_context(|| format!("server.{what}: cannot read {}", p.display()))
    };
    let cert_pem = read(cert, "tls_cert_file")?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("server.tls_cert_file: bad PEM in {}", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "server.tls_cert_file: no certificate in {}",
        cert.display()
    );
    let key_pem = read(key, "tls_key_file")?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("server.tls_key_file: bad PEM in {}", key.display()))?
        .with_context(|| format!("server.tls_key_file: no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls_cert_file / tls_key_file: the key does not fit the certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// First SIGTERM/SIGINT: `shutdown`; second: `force`.
async fn watch_signals(shutdown: CancellationToken, force: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    for token in [shutdown, force] {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        token.cancel();
    }
}

/// systemd notification (a no-op outside a `Type=notify` unit).
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}
